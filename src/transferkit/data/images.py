"""Reading images: one entry point for paths and arrays, and a cheap validity check at load time."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
    """True for a visible entry (not a folder) whose extension is a supported image format.

    FIFOs, devices and sockets with an image extension count, so that loading refuses them by
    name instead of leaving them out unseen.
    """
    return (path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
            and (path.is_file() or path.exists() and not path.is_dir()))


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_regular(path) -> str | None:
    """Why `path` is not a regular file ("file not found", "a FIFO (named pipe)", ...), or None.

    Checked with stat before any open: opening a FIFO blocks until a writer appears.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if stat.S_ISREG(mode):
        return None
    return next((f"{kind}, not a regular file" for test, kind in _KINDS if test(mode)), "not a regular file")


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
    problem = not_regular(path)
    if problem == "file not found":
        raise DataError(f"Image file not found: {path}; restore it or reload the data.")
    if problem:
        raise DataError(f"Cannot read image file {path} ({problem}); give image files only.")
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
    """Why `path` is not a readable image, or None.

    Decodes every pixel (PIL `load`), so a file whose header reads but whose data is truncated or
    corrupt is caught at load time, not in the middle of training.
    """
    problem = not_regular(path)
    if problem:
        return problem
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # PIL plugins raise many exception types for broken files
        return _reason(exc)
    return None


def _problems(paths: Sequence[str]) -> dict[int, str]:
    # PIL releases the GIL while decoding, so a few threads overlap file reads and decoding.
    workers = min(8, os.cpu_count() or 1, max(1, len(paths) // 64))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            found = list(pool.map(image_problem, paths))
    else:
        found = [image_problem(path) for path in paths]
    return {i: problem for i, problem in enumerate(found) if problem}


def keep_readable(paths: Sequence[str], *, skip_bad_files: bool, where: str) -> list[int]:
    """Positions of the readable images in `paths`.

    Args:
        paths: image file paths.
        skip_bad_files: leave unreadable files out with a warning naming each, instead of failing.
        where: the data source, for messages.

    Raises:
        DataError: some files are unreadable and `skip_bad_files` is False.
    """
    problems = _problems(paths)
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


def image_arrays(items: Sequence, where: str) -> list[np.ndarray]:
    """uint8 arrays, (H, W) or (H, W, 3/4), of in-memory images: PIL images or numpy arrays.

    Numpy arrays may be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), either uint8 (or another
    integer type with values in 0..255) or float with values in [0, 1] (scaled by 255 and rounded).
    Float arrays are never guessed to hold 0..255 values: convert those with `.astype("uint8")`.

    Raises:
        DataError: an item that is not an image, or an array of an unusable shape, dtype or range.
    """
    return [_as_uint8(item, where, i) for i, item in enumerate(items)]


def _as_uint8(item, where: str, position: int) -> np.ndarray:
    if isinstance(item, Image.Image):
        mode = "RGBA" if "A" in item.getbands() else "RGB" if item.mode != "L" else "L"
        return np.asarray(item.convert(mode))
    if not isinstance(item, np.ndarray):
        raise DataError(f"{where}: item {position} is a {type(item).__name__}, not an image; "
                        "give all images one way: PIL images or numpy arrays, or file paths.")
    array = item[:, :, 0] if item.ndim == 3 and item.shape[2] == 1 else item
    if not (array.ndim == 2 or array.ndim == 3 and array.shape[2] in (3, 4)):
        channel_first = item.ndim == 3 and item.shape[0] in (1, 3, 4)
        hint = " (it looks channel-first: use array.transpose(1, 2, 0))" if channel_first else ""
        raise DataError(f"{where}: image array {position} has shape {item.shape}; give (H, W), (H, W, 1), "
                        f"(H, W, 3) or (H, W, 4){hint}.")
    return np.ascontiguousarray(_to_uint8(array, where, position))


def _to_uint8(array: np.ndarray, where: str, position: int) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind in "iu" and array.size and (array.min() < 0 or array.max() > 255):
        raise DataError(f"{where}: integer image array {position} holds values {array.min()}..{array.max()}; "
                        "give uint8 values 0..255 (scale 16-bit images first).")
    if array.dtype.kind in "iu":
        return array.astype(np.uint8)
    if array.dtype.kind != "f":
        raise DataError(f"{where}: image array {position} has dtype {array.dtype}; give uint8 (0..255) "
                        "or float (0..1) arrays.")
    if not np.isfinite(array).all():
        raise DataError(f"{where}: float image array {position} holds non-finite values (nan or inf); "
                        "give finite values in [0, 1].")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise DataError(f"{where}: float image array {position} holds values outside [0, 1] (from {array.min():g} "
                        f"to {array.max():g}); float images must lie in [0, 1], or convert 0..255 values with "
                        ".astype('uint8').")
    return np.round(array * 255.0).astype(np.uint8)
