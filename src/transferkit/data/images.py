"""Reading images: one entry point for paths and arrays, and a cheap validity check at load time."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.errors import DataError

logger = logging.getLogger("transferkit")

IMAGE_EXTENSIONS = (
    ".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp",
)
SKIP_HINT = "pass skip_bad_files=True (--skip-bad-files) to leave such files out"


def is_image_file(path: Path) -> bool:
    """True for a visible file whose extension is a supported image format."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def open_image(item) -> Image.Image:
    """Return an RGB PIL image for a file path or a uint8 array (grayscale becomes three channels).

    Args:
        item: a path (str or PathLike) or a uint8 numpy array of shape (H, W), (H, W, 1),
            (H, W, 3) or (H, W, 4).

    Raises:
        DataError: the file cannot be read as an image, or the array has an unusable shape or dtype.
    """
    if isinstance(item, np.ndarray):
        return _array_to_image(item)
    path = os.fspath(item)
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError as exc:
        raise DataError(f"Image file not found: {path}; restore it or reload the data.") from exc
    except Exception as exc:  # PIL plugins raise many exception types for broken files
        raise DataError(f"Cannot read image file {path} ({_reason(exc)}); {SKIP_HINT} at load time.") from exc


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise DataError(f"Image arrays must be uint8 (0..255), got dtype {array.dtype}; convert with .astype('uint8').")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        return Image.fromarray(array).convert("RGB")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")
    raise DataError(f"Image arrays must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}.")


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def image_problem(path: str) -> str | None:
    """Why `path` is not a readable image, or None; checks headers without decoding all pixels."""
    try:
        with Image.open(path) as image:
            image.verify()
    except FileNotFoundError:
        return "file not found"
    except Exception as exc:  # PIL plugins raise many exception types for broken files
        return _reason(exc)
    return None


def keep_readable(paths: Sequence[str], *, skip_bad_files: bool, where: str) -> list[int]:
    """Positions of the readable images in `paths`.

    Args:
        paths: image file paths.
        skip_bad_files: leave unreadable files out with a warning naming each, instead of failing.
        where: the data source, for messages.

    Raises:
        DataError: some files are unreadable and `skip_bad_files` is False.
    """
    problems = {i: p for i, p in ((i, image_problem(path)) for i, path in enumerate(paths)) if p}
    if not problems:
        return list(range(len(paths)))
    if not skip_bad_files:
        first = next(iter(problems))
        others = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise DataError(
            f"Unreadable image file {paths[first]} ({problems[first]}){others} in {where}; "
            f"fix or remove it, or {SKIP_HINT}."
        )
    for i, reason in problems.items():
        logger.warning("Skipping unreadable image file %s (%s)", paths[i], reason)
    return [i for i in range(len(paths)) if i not in problems]
