"""Writing a run folder: config.yaml, metrics.json, history.csv, model/, checkpoints/."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from transferkit.config import RunConfig, atomic_write_text, load_yaml, save_yaml
from transferkit.deploy.native import save_native_model
from transferkit.errors import RunFolderError, WeightsFileError, writing
from transferkit.files import follow_umask, remove_stale_temporaries, temporary_name
from transferkit.locks import LOCK_FILE, check_unlocked, hold_lock
from transferkit.modelmeta import ModelMeta

#: Where a run trains and writes, not what it trains: a resume may change them.
WHERE = ("out", "accelerator", "devices", "num_nodes")
#: What the run folder records about its data and software (`provenance`), checked by a resume.
PROVENANCE_FILE = "provenance.json"
#: What a run writes before its first checkpoint: a folder holding only these never started.
_BEFORE_FIRST_CHECKPOINT = {"config.yaml", "logs", "checkpoints", PROVENANCE_FILE, LOCK_FILE}
_PACKAGES = ("transferkit", "torch", "timm", "transformers", "lightning")

log = logging.getLogger("transferkit")


def check_run_folder(config: RunConfig, *, resume: bool, compare: bool = True) -> None:
    """Refuse an --out that cannot take this run, before anything is loaded or written.

    `compare=False` leaves out the check that a resumed run's saved config is this one.
    """
    if not config.out:
        raise RunFolderError("No output folder: pass --out DIR (the run folder to create).")
    out = Path(config.out)
    saved = out / "config.yaml"
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"Output folder {out} is a file; choose another --out.")
    check_unlocked(out)  # another live process writing there: name it, whatever the folder holds
    if resume:
        if not saved.is_file():
            raise RunFolderError(f"Cannot resume: {out} is not a transferkit run (no config.yaml). "
                                 "Drop --resume to start a new run there.")
        if (out / "metrics.json").is_file():
            raise RunFolderError(f"Cannot resume {out}: it is a finished run (metrics.json exists); "
                                 "choose another --out for a new run.")
        if compare:
            check_same_config(out, config.to_dict())
    elif _contents(out) and not never_started(out):
        what = "a finished run" if (out / "metrics.json").is_file() else (
            "an unfinished run (add --resume to continue it)" if saved.is_file() else "other files")
        raise RunFolderError(f"Output folder {out} already holds {what}; choose another --out.")


def check_same_config(out: Path, options: dict) -> None:
    """Refuse `options` (config fields) that differ from the config saved in the run folder `out`."""
    previous = load_yaml(out / "config.yaml")
    differing = [k for k, v in options.items() if k not in WHERE and previous.get(k) != v]
    if differing:
        details = ", ".join(f"{k} ({previous.get(k)!r} there, {options[k]!r} now)" for k in differing)
        raise RunFolderError(f"Cannot resume {out}: its config differs in {details}. "
                             "Resume with the same options, or use another --out.")


def open_run_folder(config: RunConfig, *, resume: bool, provenance: dict | None = None) -> Path:
    """Create (or, with resume, reopen) the run folder; never overwrite a different or finished run.

    Args:
        config: the run's completed config, saved as config.yaml.
        resume: reopen an interrupted run; its recorded data must be `provenance`'s.
        provenance: what `provenance(plan)` says about this run's data and software (None: not recorded).
    """
    check_run_folder(config, resume=resume)
    out = Path(config.out)
    for folder in (out, out / "model"):  # what a killed write of an earlier attempt left behind
        remove_stale_temporaries(folder)
    if resume:
        check_provenance(out, provenance, warn=False)  # the caller warned when it checked before the lock
    elif _contents(out):  # a run that never reached its first checkpoint: nothing there to lose
        log.warning("Replacing the run in %s that never reached its first checkpoint.", out)
        clear_unstarted(out)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(config.to_dict(), out / "config.yaml")
    if provenance is not None and not (resume and (out / PROVENANCE_FILE).is_file()):
        atomic_write_text(out / PROVENANCE_FILE, json.dumps(provenance, indent=2))
    return out


def _contents(out: Path) -> list[Path]:
    """What a folder holds besides a lock file (none when it does not exist)."""
    return [p for p in out.iterdir() if p.name != LOCK_FILE] if out.is_dir() else []


def never_started(out: Path) -> bool:
    """Whether `out` holds only what a run writes before its first checkpoint (config, logs, provenance)."""
    names = {p.name for p in _contents(out)}
    return ("config.yaml" in names and names <= _BEFORE_FIRST_CHECKPOINT
            and not any((out / "checkpoints").glob("*.ckpt")))


def clear_unstarted(out: Path) -> None:
    """Remove what a run that never reached its first checkpoint wrote (the lock stays with its holder)."""
    if not never_started(out):
        raise RunFolderError(f"{out} holds checkpoints or other files; it is never cleared.")
    for path in _contents(out):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


@contextmanager
def claimed(config: RunConfig, *, resume: bool, provenance: dict | None = None) -> Iterator[Path]:
    """Own the run folder for a fit: locked, checked and opened (`open_run_folder`); yields its path.

    A fit that fails (not Ctrl-C: that one says to resume) before its first checkpoint removes what it
    wrote, and the folder when it made it, so the corrected command runs. Checkpoints are never removed.
    """
    check_run_folder(config, resume=resume)  # the folder's own refusals first (no --out, a file)
    out = Path(config.out)
    made = not out.exists()
    try:
        with hold_lock(out, "fit"):
            open_run_folder(config, resume=resume, provenance=provenance)
            try:
                yield out
            except Exception:
                if never_started(out):
                    clear_unstarted(out)
                raise
    finally:
        if made and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def provenance(splits: dict, target=None) -> dict:
    """What a run folder records of its data (content fingerprints, not paths) and of the software."""
    data = {name: part.fingerprint() for name, part in splits.items()}
    if target is not None:
        data["target"] = target.fingerprint()
    return {"data": data, "versions": package_versions()}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_provenance(out: Path, now: dict | None, *, warn: bool = True) -> None:
    """Refuse to resume `out` on data whose content changed; warn (if `warn`) when the packages changed."""
    try:
        saved = json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        if warn:
            log.warning("%s records no data fingerprint (an older run): its data cannot be checked.", out)
        return
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"Cannot resume {out}: {PROVENANCE_FILE} is unreadable ({exc}); "
                             "start a new run with another --out.") from None
    if now is None:
        return
    changed = sorted(k for k in set(saved.get("data", {})) | set(now["data"])
                     if saved.get("data", {}).get(k) != now["data"].get(k))
    if changed:
        raise RunFolderError(f"Cannot resume {out}: its data changed since the run began (the content of the "
                             f"{', '.join(changed)} split{'s' if len(changed) > 1 else ''} differs); restore "
                             "the data, or start a new run with another --out.")
    versions = {k: (v, now["versions"].get(k)) for k, v in saved.get("versions", {}).items()
                if v != now["versions"].get(k)}
    if versions and warn:
        log.warning("Resuming %s with other package versions: %s.", out,
                    ", ".join(f"{k} {a} -> {b}" for k, (a, b) in versions.items()))


def read_checkpoint(path: Path) -> dict:
    """A Lightning checkpoint loaded as plain data (`weights_only=True`): no pickled code ever runs.

    Raises:
        WeightsFileError: the file holds objects other than tensors and plain containers, or is damaged.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        why = "holds objects other than weights, which transferkit never loads"
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        why = f"is damaged ({' '.join(str(exc).split())[:120]})"
    raise WeightsFileError(f"Checkpoint {path} {why}; restore it from a backup, or start a new run with "
                           "another --out.")


def write_predictions(path: Path, data, preds: np.ndarray, scores: np.ndarray | None = None) -> None:
    """One row per item: index, input (path or text; `item<i>` for an in-memory image), target, prediction,
    and for classification with `scores` each class's probability as `p_<class>`."""
    frame = pd.DataFrame({"input": [item if isinstance(item, str) else f"item{i}" for i, item in enumerate(data.inputs)],
                          "target": data.targets, "prediction": preds})
    if data.classes:
        frame["target"] = [data.classes[i] for i in data.targets]
        frame["prediction"] = [data.classes[i] for i in preds]
        if scores is not None:
            for j, name in enumerate(data.classes):
                frame[f"p_{name}"] = np.asarray(scores)[:, j]
    atomic_write_text(path, frame.to_csv(index_label="index"))


def next_log_version(out: Path) -> str:
    """A fresh CSV-log folder per attempt: Lightning empties an existing one when a run resumes."""
    existing = sorted((out / "logs").glob("attempt*"))
    return f"attempt{len(existing) + 1}"


def read_history(out: Path) -> list[dict]:
    """Per-epoch rows from Lightning's CSV logs of every attempt (train and val rows merged)."""
    paths = sorted((out / "logs").glob("attempt*/metrics.csv"), key=lambda p: int(p.parent.name[7:]))
    frames = [pd.read_csv(p) for p in paths if p.stat().st_size]
    if not frames:
        return []
    frame = pd.concat(frames, ignore_index=True)
    if "epoch" not in frame:
        return []
    frame = frame.drop(columns=[c for c in ("step",) if c in frame]).groupby("epoch", as_index=False).last()
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def write_results(out: Path, plan, model, results) -> None:
    """model/, history.csv and metrics.json of a finished run (metrics.json last: it marks the run finished).

    Args:
        plan: the run's `Plan`.
        model: the model to save (`strategy.export_model` of the trained one).
        results: the run's `Results` (metrics per split, history, seconds, head selection, domain gap).
    """
    save_model(out / "model", plan, model)
    if results.history:
        atomic_write_text(out / "history.csv", pd.DataFrame(results.history).to_csv(index=False))
    groups = plan.strategy.summary(plan.model)
    config = plan.config
    payload = {**results.metrics, "train_seconds": round(results.train_seconds, 3),
               "trainable_params": int(sum(r["trainable"] for r in groups)),
               # Of the model as trained: with parts only training uses (a domain discriminator, unmerged adapters).
               "total_params": int(sum(p.numel() for p in plan.model.parameters())),
               "strategy": config.strategy, "model": config.model, "task": config.task,
               "epochs_run": len(results.history), "groups": groups,
               "n_train": len(plan.splits["train"]), "n_val": len(plan.splits["val"]),
               "n_test": len(plan.splits["test"])}
    payload.update(plan.data_checks)
    if plan.choice is not None:
        payload["strategy_choice"] = plan.choice.to_dict()
    if results.head_selection:
        payload["head_selection"] = results.head_selection
    if plan.target is not None:
        payload["target_data"] = config.target_data
        payload["n_target"] = len(plan.target)
        # Target labels (in --test-data) are only scored, never used to pick the checkpoint.
        payload["model_selection"] = ("source validation split" if len(plan.splits["val"])
                                      else "last epoch (no source validation split)")
        payload["domain_gap"] = results.domain_gap
    atomic_write_text(out / "metrics.json", json.dumps(payload, indent=2, default=float))


def save_model(folder: Path, plan, model) -> None:
    """Weights as safetensors plus what predict needs (ModelMeta): backbone id, labels, preprocessing."""
    folder.mkdir(parents=True, exist_ok=True)
    backbone = model.backbone
    backbone.save_preprocessing(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    final = folder / "model.safetensors"
    tmp = temporary_name(final)
    try:
        with writing(final):
            save_file(state, str(tmp))
            follow_umask(tmp)
            os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    config = plan.config
    native = save_native_model(folder, model, target_stats=None if config.task == "classification"
                               else plan.scaling.as_tuple())
    ModelMeta(backbone=config.model, task=config.task, classes=plan.splits["train"].classes,
              modality=backbone.data_spec.modality, data_spec=backbone.data_spec, image_size=config.image_size,
              max_length=config.max_length, head="mlp" if config.head == "mlp" else "linear",
              num_features=backbone.num_features, scaling=plan.scaling, precision=config.precision,
              native=native).save(folder)
