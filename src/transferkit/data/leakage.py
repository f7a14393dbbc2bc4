"""Leakage: held-out items (val, test) identical by content to training items.

Content, not path or position, decides: an image file is keyed by a hash of its bytes, an
in-memory image by its shape and pixel bytes, a text by its normalised form (Unicode NFKC, case
folded, runs of whitespace collapsed to one space, ends stripped). So a file copied into test/ under
another name is found; the same picture re-encoded in another format is not.
"""

from __future__ import annotations

import hashlib
import logging
import os
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from transferkit.data.dataset import LabeledData, file_digest

logger = logging.getLogger("transferkit")

METHOD = ("sha256 of the image file's digest (blake2b of its bytes) or of array shape + pixels; texts compared "
          "after NFKC, case folding and whitespace collapsing")


@dataclass(frozen=True)
class LeakageReport:
    """How many items of one held-out split repeat a training item.

    Attributes:
        split: the held-out split ("val" or "test").
        count: items of the split identical by content to at least one training item.
        total: items in the split.
        examples: up to a few (held-out item, training item) pairs, described for people.
    """

    split: str
    count: int
    total: int
    examples: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict:
        """JSON-ready form, for metrics.json."""
        return {"count": self.count, "total": self.total, "method": METHOD,
                "examples": [{"item": item, "train_item": train} for item, train in self.examples]}

    def message(self) -> str:
        """One warning line naming the count and the examples."""
        shown = "; ".join(f"{item} == train {train}" for item, train in self.examples)
        return (f"{self.count} of {self.total} {self.split} items are identical to training items (e.g. {shown}); "
                f"{self.split} scores overstate how well the model generalises: remove the duplicates.")


def content_key(item, modality: str) -> bytes:
    """A digest of what an input is, independent of where it is stored."""
    digest = hashlib.sha256()
    if isinstance(item, np.ndarray):
        digest.update(f"array|{item.dtype}|{item.shape}|".encode())
        digest.update(np.ascontiguousarray(item).tobytes())
    elif modality == "text":
        digest.update(b"text|" + normalise_text(str(item)).encode("utf-8", "surrogatepass"))
    else:
        digest.update(b"file|" + file_digest(os.fspath(item)).encode())
    return digest.digest()


def normalise_text(text: str) -> str:
    """The form two texts are compared in: NFKC, case folded, whitespace runs as one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _describe(data: LabeledData, index: int) -> str:
    item = data.inputs[index]
    if isinstance(item, np.ndarray):
        return f"item {index}"
    text = str(item)
    return repr(text if len(text) <= 60 else text[:57] + "...") if data.modality == "text" else text


def _keys(data: LabeledData) -> list[bytes]:
    return [content_key(item, data.modality) for item in data.inputs]


def find_duplicates(
    train: LabeledData, other: LabeledData, *, split: str = "test", max_examples: int = 3,
    train_keys: dict[bytes, int] | None = None,
) -> LeakageReport:
    """Count items of `other` identical by content to an item of `train` (see the module docstring).

    Args:
        train: the training data.
        other: held-out data (val or test).
        split: the held-out split's name, for the report.
        max_examples: how many pairs to describe.
        train_keys: `training_keys(train)`, to hash the training data once for several splits.
    """
    first_seen = train_keys if train_keys is not None else training_keys(train)
    count, examples = 0, []
    for index, key in enumerate(_keys(other)):
        if key not in first_seen:
            continue
        count += 1
        if len(examples) < max_examples:
            examples.append((_describe(other, index), _describe(train, first_seen[key])))
    return LeakageReport(split, count, len(other), tuple(examples))


def training_keys(train: LabeledData) -> dict[bytes, int]:
    """Content key -> position of its first training item."""
    keys: dict[bytes, int] = {}
    for index, key in enumerate(_keys(train)):
        keys.setdefault(key, index)
    return keys


def check_leakage(
    splits: dict[str, LabeledData], held_out: tuple[str, ...] = ("val", "test"),
) -> dict[str, LeakageReport]:
    """Reports for each non-empty held-out split against "train"; logs one warning per split with duplicates."""
    present = [name for name in held_out if name in splits and len(splits[name])]
    if not present:
        return {}
    keys = training_keys(splits["train"])
    reports = {name: find_duplicates(splits["train"], splits[name], split=name, train_keys=keys) for name in present}
    for report in reports.values():
        if report.count:
            logger.warning(report.message())
    return reports
