"""Small image folders written with PIL into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, value: int = 128, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Path:
    """Write a solid (width, height) image with `value` in every channel and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    shape = (size[1], size[0]) if channels == 1 else (size[1], size[0], channels)
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(path)
    return path


def write_class_folder(root: Path, counts: dict[str, int], ext: str = ".png") -> Path:
    """Write `counts[name]` images into root/<name>/ and return root."""
    for name, count in counts.items():
        for i in range(count):
            write_image(root / name / f"img{i}{ext}", value=(40 * i) % 256)
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_class_folder(tmp_path / "pets", {"cat": 3, "dog": 4})


@pytest.fixture
def split_folder(tmp_path: Path) -> Path:
    root = tmp_path / "split"
    write_class_folder(root / "train", {"cat": 4, "dog": 5})
    write_class_folder(root / "test", {"cat": 2, "dog": 1})
    return root


@pytest.fixture
def make_image():
    """The `write_image` helper, for tests that need particular files."""
    return write_image


@pytest.fixture
def make_class_folder():
    """The `write_class_folder` helper."""
    return write_class_folder
