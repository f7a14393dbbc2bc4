"""Shared by the benchmark scripts: the data both sides use, a fresh run folder, and JSON output."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import torch

#: Where `make bench` keeps run folders and the feature cache of the benchmarks.
BENCH_ROOT = Path(os.environ.get("TRANSFERKIT_BENCH_DIR", "runs/bench"))


def machine() -> dict:
    """What the figures were measured on."""
    return {"cpu_threads": torch.get_num_threads(), "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "load_avg_1m": round(os.getloadavg()[0], 2)}


def emit(bench: str, **fields) -> None:
    """Print one JSON line (the format every script prints and `table.py` reads)."""
    print(json.dumps({"bench": bench, **fields, "machine": machine()}, default=float), flush=True)


def fresh_folder(name: str) -> Path:
    """An empty run folder under BENCH_ROOT (removed first if a previous benchmark left it)."""
    folder = BENCH_ROOT / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder


def fresh_cache() -> str:
    """An empty feature cache, so transferkit pays for extraction like the plain recipe does."""
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(dir=BENCH_ROOT, prefix="cache-")


#: Validation and test fractions of demo:mnist's 5,000 digits (200 and 500), kept small so that
#: the benchmarks time training more than evaluation.
SPLIT = {"val_fraction": 0.04, "test_fraction": 0.1}


def mnist_splits(train_per_class: int, seed: int = 0) -> dict:
    """transferkit's train/val/test split of demo:mnist, so both sides see the same images."""
    from transferkit.config import RunConfig
    from transferkit.training.plan import load_splits

    return load_splits(RunConfig(data="demo:mnist", model="efficientnet_lite0", train_per_class=train_per_class,
                                 seed=seed, **SPLIT))


def arrays(split) -> tuple[list, list]:
    return list(split.inputs), list(split.targets)


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")
