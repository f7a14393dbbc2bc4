"""Hand-made comparison cells with real prediction files, so a test controls every item's correctness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from transferkit.backbones.base import DataSpec
from transferkit.modelmeta import ModelMeta

CLASSES = [str(i) for i in range(10)]


def correct(n: int, k: int, offset: int = 0) -> np.ndarray:
    """n items of which k (starting at `offset`, wrapping) are predicted right."""
    mask = np.zeros(n, dtype=bool)
    mask[(offset + np.arange(k)) % n] = True
    return mask


def write_cells(folder: Path, masks: dict[str, list[np.ndarray]], *, size: str = "10",
                val: dict[str, list[float]] | None = None, predictions: bool = True) -> pd.DataFrame:
    """Write one cell folder per (strategy, seed) under folder/cells and return their comparison table.

    Args:
        folder: the comparison folder.
        masks: strategy -> one boolean array per seed (True: that test item predicted right). The same seed
            gets the same test targets in every strategy, as in a real comparison.
        size: the data size of every cell.
        val: strategy -> val/accuracy per seed (default: the test accuracy).
        predictions: False leaves out predictions_test.csv (the report must fall back to seeds).
    """
    rows = []
    for strategy, per_seed in masks.items():
        for seed, mask in enumerate(per_seed):
            cell = f"{strategy}-n{size}-seed{seed}"
            run = folder / "cells" / cell
            (run / "model").mkdir(parents=True, exist_ok=True)
            ModelMeta(backbone="tiny-cnn", task="classification", classes=CLASSES, modality="image",
                      data_spec=DataSpec(modality="image"), image_size=None, max_length=None, head="linear",
                      num_features=8).save(run / "model")
            targets = (np.arange(len(mask)) + seed) % len(CLASSES)
            predicted = np.where(mask, targets, (targets + 1) % len(CLASSES))
            if predictions:
                pd.DataFrame({"target": targets, "prediction": predicted}).to_csv(
                    run / "predictions_test.csv", index_label="index")
            accuracy = float(np.mean(mask))
            rows.append({"cell": cell, "strategy": strategy, "train_per_class": size, "seed": seed,
                         "task": "classification", "pretrained": strategy != "scratch",
                         "val/accuracy": (val or {}).get(strategy, [accuracy] * len(per_seed))[seed],
                         "test/accuracy": accuracy, "train_seconds": 1.0, "trainable_params": 10,
                         "labels_per_class": float(size), "n_train": 10 * int(size),
                         "folder": f"cells/{cell}"})
    return pd.DataFrame(rows)


SPEC = {"strategies": [], "train_per_class": [10], "seeds": [0, 1], "options": {"data": "d", "model": "m"}}


def spec_for(table: pd.DataFrame) -> dict:
    return {**SPEC, "strategies": list(table["strategy"].unique()), "seeds": sorted(table["seed"].unique())}
