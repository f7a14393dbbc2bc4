"""Writing a run folder: config.yaml, metrics.json, history.csv, model/, checkpoints/."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.torch import save_file

from transferkit.config import RunConfig, atomic_write_text, load_yaml, save_yaml
from transferkit.deploy.native import save_native_model
from transferkit.errors import RunFolderError
from transferkit.modelmeta import ModelMeta
#: Where a run trains and writes, not what it trains: a resume may change them.
WHERE = ("out", "accelerator", "devices", "num_nodes")


def check_run_folder(config: RunConfig, *, resume: bool, compare: bool = True) -> None:
    """Refuse an --out that cannot take this run, before anything is loaded or written.

    `compare=False` leaves out the check that a resumed run's saved config is this one.
    """
    if not config.out:
        raise RunFolderError("No output folder: pass --out DIR (the run folder to create).")
    out = Path(config.out)
    saved = out / "config.yaml"
    if resume:
        if not saved.is_file():
            raise RunFolderError(f"Cannot resume: {out} is not a transferkit run (no config.yaml). "
                                 "Drop --resume to start a new run there.")
        if (out / "metrics.json").is_file():
            raise RunFolderError(f"Cannot resume {out}: it is a finished run (metrics.json exists); "
                                 "choose another --out for a new run.")
        if not compare:
            return
        previous = load_yaml(saved)
        differing = [k for k, v in config.to_dict().items() if k not in WHERE and previous.get(k) != v]
        if differing:
            raise RunFolderError(f"Cannot resume {out}: its config differs in {', '.join(differing)}. "
                                 "Resume with the same options, or use another --out.")
    elif out.exists() and any(out.iterdir()):
        what = "a finished run" if (out / "metrics.json").is_file() else (
            "an unfinished run (add --resume to continue it)" if saved.is_file() else "other files")
        raise RunFolderError(f"Output folder {out} already holds {what}; choose another --out.")


def open_run_folder(config: RunConfig, *, resume: bool) -> Path:
    """Create (or, with resume, reopen) the run folder; never overwrite a different or finished run."""
    check_run_folder(config, resume=resume)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(config.to_dict(), out / "config.yaml")
    return out


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
    payload.update(split_checks(plan.splits))
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


def split_checks(splits) -> dict:
    """metrics.json's record of the data checks: {"leakage": per held-out split, "split_warnings": [...]}.

    From the `Splits` that make_splits returned; splits without its reports (a plain mapping) are
    checked for leakage here, and have no split warnings to record.
    """
    if hasattr(splits, "leakage_dict"):
        return {"leakage": splits.leakage_dict(), "split_warnings": list(splits.warnings)}
    from transferkit.data import check_leakage

    reports = check_leakage(dict(splits))
    return {"leakage": {name: report.to_dict() for name, report in reports.items()},
            "split_warnings": [report.message() for report in reports.values() if report.count]}


def save_model(folder: Path, plan, model) -> None:
    """Weights as safetensors plus what predict needs (ModelMeta): backbone id, labels, preprocessing."""
    folder.mkdir(parents=True, exist_ok=True)
    backbone = model.backbone
    backbone.save_preprocessing(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = folder / ".model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, folder / "model.safetensors")
    config = plan.config
    native = save_native_model(folder, model, target_stats=None if config.task == "classification"
                               else plan.scaling.as_tuple())
    ModelMeta(backbone=config.model, task=config.task, classes=plan.splits["train"].classes,
              modality=backbone.data_spec.modality, data_spec=backbone.data_spec, image_size=config.image_size,
              max_length=config.max_length, head="mlp" if config.head == "mlp" else "linear",
              num_features=backbone.num_features, scaling=plan.scaling, precision=config.precision,
              native=native).save(folder)
