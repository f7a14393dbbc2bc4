"""LabeledData: the one in-memory form every data source is turned into."""

from __future__ import annotations

import hashlib
import os
from stat import S_ISREG
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from transferkit.errors import ConfigError, DataError, suggest

MODALITIES = ("image", "text")
TASKS = ("classification", "regression")


class RawPart(NamedTuple):
    """One part of a source before class names become indices: labels are names, numbers or None."""

    inputs: list
    labels: list | None


def check_task(task: str) -> None:
    """Raise ConfigError for a task name other than classification or regression."""
    if task not in TASKS:
        raise ConfigError(f"Unknown task {task!r}.{suggest(task, TASKS)} Choose one of: {', '.join(TASKS)}.")


@dataclass
class LabeledData:
    """Inputs with optional targets, in the order the source listed them.

    Attributes:
        inputs: texts (str) for text; file paths (str) or uint8 arrays (H, W) / (H, W, C) for images.
        targets: int64 class indices into `classes` (classification), float32 values (regression),
            or None when the data is unlabeled.
        modality: "image" or "text".
        task: "classification" or "regression".
        classes: sorted class names for labeled classification data, else None.
        name: human-readable source, such as "demo:mnist" or the path that was given.
    """

    inputs: list
    targets: np.ndarray | None
    modality: str
    task: str
    classes: list[str] | None
    name: str

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ConfigError(f"Unknown modality {self.modality!r}; choose one of: {', '.join(MODALITIES)}.")
        check_task(self.task)
        self.inputs = list(self.inputs)
        if self.targets is None:
            return
        dtype = np.int64 if self.task == "classification" else np.float32
        self.targets = np.asarray(self.targets, dtype=dtype)
        if self.targets.shape != (len(self.inputs),):
            raise DataError(
                f"{self.name}: {len(self.inputs)} inputs but targets of shape {self.targets.shape}; "
                "give exactly one target per input."
            )
        if self.task == "classification":
            self._check_indices()

    def _check_indices(self) -> None:
        if self.classes is None:
            raise DataError(f"{self.name}: classification targets need a list of class names.")
        if len(self.targets) and (self.targets.min() < 0 or self.targets.max() >= len(self.classes)):
            raise DataError(
                f"{self.name}: class indices must lie in [0, {len(self.classes)}) for {len(self.classes)} classes."
            )

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def labeled(self) -> bool:
        return self.targets is not None

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabeledData:
        """Return the items at `indices` (in that order) with the same classes and name."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        targets = None if self.targets is None else self.targets[idx]
        return LabeledData(
            inputs=[self.inputs[i] for i in idx], targets=targets, modality=self.modality,
            task=self.task, classes=None if self.classes is None else list(self.classes), name=self.name,
        )

    def fingerprint(self) -> str:
        """Stable sha1 of the content: texts, array bytes or image file bytes (not paths); plus targets and classes.

        A moved or copied data folder keeps its fingerprint; an image whose bytes changed changes it. Each
        file's digest is remembered per process by (path, size, mtime, ctime, inode), so it is read once.
        """
        digest = hashlib.sha1()
        _update(digest, f"{self.modality}|{self.task}|{self.classes!r}|{len(self.inputs)}")
        for item in self.inputs:
            _hash_item(digest, item, is_path=self.modality == "image")
        if self.targets is None:
            _update(digest, "unlabeled")
        else:
            _update(digest, str(self.targets.dtype))
            digest.update(np.ascontiguousarray(self.targets).tobytes())
        return digest.hexdigest()

    def class_counts(self) -> dict[str, int]:
        """Samples per class in class order (zeros included); empty for regression or unlabeled data."""
        if self.task != "classification" or self.targets is None:
            return {}
        counts = np.bincount(self.targets, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}


def _update(digest, text: str) -> None:
    # Length prefixes keep ("ab", "c") and ("a", "bc") from hashing alike.
    raw = text.encode("utf-8", "surrogatepass")
    digest.update(len(raw).to_bytes(8, "little"))
    digest.update(raw)


def _hash_item(digest, item, *, is_path: bool) -> None:
    if isinstance(item, np.ndarray):
        _update(digest, f"array|{item.dtype}|{item.shape}")
        digest.update(np.ascontiguousarray(item).tobytes())
        return
    item = os.fspath(item) if isinstance(item, os.PathLike) else str(item)
    if not is_path:
        _update(digest, f"text|{item}")
        return
    _update(digest, f"file|{file_digest(item)}")


_file_digests: dict[tuple, str] = {}  # (path, size, mtime, ctime, inode) -> digest of the bytes


def file_digest(path: str) -> str:
    """blake2b of a file's bytes, remembered while its size, times and inode stay the same (any write moves ctime).

    The one place image files are read for their content: the run's data fingerprint and the leakage
    check share it, so each file is read once per process.
    """
    try:
        info = os.stat(path)
        if not S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            raise DataError(f"{path} is not a regular file; image rows must name image files.")
        key = (path, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
        if key not in _file_digests:
            with open(path, "rb") as f:
                _file_digests[key] = hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    except OSError as exc:
        raise DataError(f"Cannot read image file {path}: {exc.strerror}; restore it or reload the data.") from exc
    return _file_digests[key]


def from_raw_labels(
    inputs: list, labels, *, modality: str, task: str, classes: list[str] | None, name: str
) -> LabeledData:
    """Build LabeledData from raw labels: class names (classification), numbers (regression) or None."""
    if labels is None:
        return LabeledData(inputs, None, modality, task, None, name)
    if task == "regression":
        return LabeledData(inputs, np.asarray(labels, dtype=np.float32), modality, task, None, name)
    index = {c: i for i, c in enumerate(classes)}
    targets = np.fromiter((index[label] for label in labels), dtype=np.int64, count=len(labels))
    return LabeledData(inputs, targets, modality, task, list(classes), name)
