"""Synthetic data for the CLI, run-folder and backbone tests, written with PIL and csv into tmp folders."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
from PIL import Image

COLORS = {"blue": (30, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}
POSITIVE = ["great fun movie", "loved it, wonderful", "excellent and brilliant acting", "a joy to watch",
            "superb and moving"]
NEGATIVE = ["terrible boring film", "hated it, awful", "dreadful waste of time", "poor and dull acting",
            "bad and tedious"]


def write_color_images(root: Path, per_class: int = 20, seed: int = 0, size: int = 16,
                       classes: tuple[str, ...] = tuple(COLORS)) -> Path:
    """root/<color>/<i>.png: noisy solid-colour squares, one clearly different colour per class."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(-20, 21, (size, size, 3))
            pixels = np.clip(np.array(COLORS[name]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def write_reviews(path: Path, per_class: int = 20, seed: int = 0, labeled: bool = True) -> Path:
    """A csv of short positive and negative reviews (`text`, and `label` pos/neg when labeled)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"] if labeled else ["text"])
        for i in range(per_class):
            for label, pool in (("pos", POSITIVE), ("neg", NEGATIVE)):
                text = f"{rng.choice(pool)} {i}"
                writer.writerow([text, label] if labeled else [text])
    return path


def write_counts(path: Path, rows: int = 40, seed: int = 0) -> Path:
    """A regression csv: the target is how many times the text says "good"."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            n = rng.randint(1, 8)
            writer.writerow([" ".join(["good"] * n), n])
    return path
