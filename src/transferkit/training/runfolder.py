"""Writing a run folder: config.yaml, metrics.json, history.csv, model/, checkpoints/."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from transferkit.config import RunConfig, atomic_write_text, load_yaml, save_yaml
from transferkit.errors import RunFolderError

MODEL_META = "transferkit.json"
FORMAT_VERSION = 1
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


def write_predictions(path: Path, data, preds: np.ndarray) -> None:
    import pandas as pd

    frame = pd.DataFrame({"target": data.targets, "prediction": preds})
    if data.classes:
        frame["target"] = [data.classes[i] for i in data.targets]
        frame["prediction"] = [data.classes[i] for i in preds]
    atomic_write_text(path, frame.to_csv(index_label="index"))


def next_log_version(out: Path) -> str:
    """A fresh CSV-log folder per attempt: Lightning empties an existing one when a run resumes."""
    existing = sorted((out / "logs").glob("attempt*"))
    return f"attempt{len(existing) + 1}"


def read_history(out: Path) -> list[dict]:
    """Per-epoch rows from Lightning's CSV logs of every attempt (train and val rows merged)."""
    import pandas as pd

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


def write_results(out: Path, prep, model, metrics: dict, history: list[dict], train_seconds: float) -> None:
    import pandas as pd

    save_model(out / "model", prep, model)
    if history:
        atomic_write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))
    trainable = sum(r["trainable"] for r in prep.strategy.summary(prep.model))
    payload = {**metrics, "train_seconds": round(train_seconds, 3), "trainable_params": int(trainable),
               # Of the model as trained: with parts only training uses (a domain discriminator, unmerged adapters).
               "total_params": int(sum(p.numel() for p in prep.model.parameters())),
               "strategy": prep.config.strategy, "model": prep.config.model, "task": prep.config.task,
               "epochs_run": len(history), "groups": prep.strategy.summary(prep.model),
               "n_train": len(prep.splits["train"]), "n_val": len(prep.splits["val"]),
               "n_test": len(prep.splits["test"])}
    if prep.choice is not None:
        payload["strategy_choice"] = prep.choice.to_dict()
    if getattr(prep, "head_selection", None):
        payload["head_selection"] = prep.head_selection
    if getattr(prep, "target", None) is not None:
        payload["target_data"] = prep.config.target_data
        payload["n_target"] = len(prep.target)
        # Target labels (in --test-data) are only scored, never used to pick the checkpoint.
        payload["model_selection"] = ("source validation split" if len(prep.splits["val"])
                                      else "last epoch (no source validation split)")
        payload["domain_gap"] = prep.domain_gap
    atomic_write_text(out / "metrics.json", json.dumps(payload, indent=2, default=float))


def save_model(folder: Path, prep, model) -> None:
    """Weights as safetensors plus what predict needs: backbone id, labels, preprocessing."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    backbone = model.backbone
    backbone.save_preprocessing(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = folder / ".model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, folder / "model.safetensors")
    head_kind = "mlp" if prep.config.head == "mlp" else "linear"
    meta = {"format_version": FORMAT_VERSION, "backbone": prep.config.model, "task": prep.config.task,
            "classes": prep.splits["train"].classes, "modality": backbone.data_spec.modality,
            "data_spec": backbone.data_spec.to_dict(), "image_size": prep.config.image_size,
            "max_length": prep.config.max_length, "head": head_kind, "num_features": backbone.num_features,
            "target_stats": list(prep.target_stats), "precision": prep.config.precision}
    atomic_write_text(folder / MODEL_META, json.dumps(meta, indent=2))


def read_model_meta(folder: Path) -> dict:
    path = Path(folder) / "model" / MODEL_META
    if not path.is_file():
        raise RunFolderError(f"{folder} is not a transferkit run: {path} is missing. "
                             "Point to a folder written by `transferkit fit --out`.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path} is damaged ({exc}); re-run fit to rebuild it.") from None
