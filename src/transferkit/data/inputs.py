"""Python objects as data: DataFrames, lists of file paths, PIL images, numpy arrays or texts.

What a list means never depends on guessing: a list of strings is image file paths for an image
model and texts for a text model, so the caller states the modality (or the list holds images).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from transferkit.data.dataset import MODALITIES, LabeledData, RawPart
from transferkit.data.images import image_arrays, keep_readable, not_regular
from transferkit.data.labels import label_names, regression_targets
from transferkit.data.tables import Columns, frame_part
from transferkit.errors import ConfigError, DataError

KEYWORDS = "text_column=, image_column=, label_column="
ACCEPTED = ("a path (image folder, table file, demo name), a pandas DataFrame, or a list of file paths, "
            "PIL images, numpy arrays or texts")


def describe(obj) -> str:
    """A short name of a Python data object for messages and `LabeledData.name`."""
    if isinstance(obj, pd.DataFrame):
        return f"DataFrame ({len(obj)} rows)"
    if isinstance(obj, list | tuple | pd.Series):
        return f"{type(obj).__name__} of {len(obj)} inputs"
    return type(obj).__name__


def python_part(
    obj, *, modality: str | None, task: str, columns: Columns, labels=None,
    require_labels: bool = True, skip_bad_files: bool = False,
) -> tuple[RawPart, str]:
    """Turn a DataFrame or a list of inputs into a raw part and its modality.

    Args:
        obj: a pandas DataFrame (columns named by `columns`) or a list / tuple / Series of inputs.
        modality: "image" or "text" when the caller knows it (a model's modality); None lets a
            DataFrame's columns or a list of images decide, and refuses a list of strings.
        task: "classification" or "regression".
        columns: column names of a DataFrame.
        labels: labels of a list, one per input (not allowed with a DataFrame: use its label column).
        require_labels: refuse inputs without labels.
        skip_bad_files: leave unreadable image files out with a warning instead of failing.

    Raises:
        DataError: the object cannot be read as data (the message says what to give instead).
        ConfigError: an unknown modality, or a list of strings without a modality.
    """
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"Unknown modality {modality!r}; choose one of: {', '.join(MODALITIES)}.")
    where = describe(obj)
    if isinstance(obj, pd.DataFrame):
        if labels is not None:
            raise DataError(f"{where}: labels= is for lists; a DataFrame's labels come from its label column.")
        if len(obj) == 0:
            raise DataError(f"{where} has no rows; give at least one.")
        return frame_part(obj, where=where, folder=None, columns=columns._replace(how=KEYWORDS), task=task,
                          require_labels=require_labels, skip_bad_files=skip_bad_files, modality=modality)
    items = _as_list(obj)
    inputs, kept, modality = _list_inputs(items, modality, where, skip_bad_files)
    return RawPart(inputs, _list_labels(labels, kept, where, task, require_labels, len(items))), modality


def _as_list(obj) -> list:
    if isinstance(obj, list | tuple):
        return list(obj)
    if isinstance(obj, pd.Series):
        return list(obj.to_numpy(dtype=object))
    if isinstance(obj, str | os.PathLike):
        raise DataError(f"Got a bare string {str(obj)[:60]!r} where a list was expected; wrap it in a list: "
                        "[...] (a folder or table path must exist and a table needs a .csv, .jsonl or .parquet name).")
    if isinstance(obj, Image.Image):
        raise DataError("Got one PIL image where a list was expected; wrap it in a list: [image].")
    if isinstance(obj, np.ndarray):
        raise DataError(f"Got a numpy array of shape {obj.shape} where a list was expected; give a list with "
                        "one array per image ([array] for one image, list(batch) for a batch).")
    if isinstance(obj, dict):
        raise DataError("Got a dict; give a pandas DataFrame (pd.DataFrame(your_dict)) or a list of inputs.")
    raise DataError(f"Cannot read a {type(obj).__name__} as data; give {ACCEPTED}.")


def _kind(item) -> str:
    if isinstance(item, str | os.PathLike):
        return "file paths or texts" if isinstance(item, str) else "file paths"
    if isinstance(item, Image.Image | np.ndarray):
        return "images"
    return type(item).__name__


def _list_inputs(items: list, modality: str | None, where: str, skip_bad_files: bool) -> tuple[list, list[int], str]:
    """The inputs, the positions of `items` they come from (skipped files leave gaps) and the modality."""
    if not items:
        raise DataError("Got an empty list; give at least one input.")
    kinds = [_kind(item) for item in items]
    first = {}
    for i, kind in enumerate(kinds):
        first.setdefault(kind, i)
    unknown = [k for k in first if k not in ("file paths or texts", "file paths", "images")]
    if unknown:
        i = first[unknown[0]]
        raise DataError(f"{where}: item {i} is a {unknown[0]} ({str(items[i])[:40]!r}); give {ACCEPTED}.")
    if "images" in first and len(first) > 1:
        other = next(k for k in first if k != "images")
        raise DataError(f"{where} mixes images (item {first['images']}) with {other} (item {first[other]}); "
                        "give one kind of input per list.")
    if "images" in first:
        return _image_list(items, modality, where), list(range(len(items))), "image"
    if modality is None and "file paths or texts" in first:
        raise ConfigError(f"{where}: a list of strings means image file paths for an image model and texts for a "
                          "text model; pass modality='image' or modality='text'.")
    modality = modality or "image"  # Path objects only: files
    if modality == "text":
        if "file paths" in first:
            raise DataError(f"{where}: item {first['file paths']} is a path object, but a text model reads texts; "
                            "give a list of strings.")
        return list(items), list(range(len(items))), "text"
    paths = [os.fspath(item) for item in items]
    kept = _readable_paths(paths, where, skip_bad_files)
    return [paths[i] for i in kept], kept, "image"


def _image_list(items: list, modality: str | None, where: str) -> list:
    if modality == "text":
        raise DataError(f"{where} holds images, but the model reads texts; give a list of strings.")
    return image_arrays(items, where)


def _readable_paths(paths: list[str], where: str, skip_bad_files: bool) -> list[int]:
    if all(not_regular(path) == "file not found" for path in paths):
        raise DataError(
            f"{where}: none of the strings is an existing file (first: {_tail(paths[0])!r}); for an image model a "
            "list of strings means image file paths (texts need a text model)."
        )
    keep = keep_readable(paths, skip_bad_files=skip_bad_files, where=where)
    if not keep:
        raise DataError(f"No readable images remain in {where} after skipping unreadable files.")
    return keep


def _tail(path: str, keep: int = 80) -> str:
    """A long path shortened from the left: its file name is what tells the user which input it was."""
    return path if len(path) <= keep else "..." + path[-keep:]


def _list_labels(labels, kept: list[int], where: str, task: str, require_labels: bool, count: int) -> list | None:
    if labels is None:
        if require_labels:
            raise DataError(f"{where} carries no labels; pass labels=[...] (one per input) or a DataFrame with a "
                            "label column.")
        return None
    labels = _as_label_list(labels)
    if len(labels) != count:
        raise DataError(f"{where}: {len(labels)} labels for {count} inputs; give exactly one label per input.")
    if any(label is None or isinstance(label, float) and np.isnan(label) for label in labels):
        position = next(i for i, v in enumerate(labels) if v is None or isinstance(v, float) and np.isnan(v))
        raise DataError(f"{where}: label {position} is missing; give a label for every input.")
    values = (label_names if task == "classification" else regression_targets)(labels, where, "labels")
    return [values[i] for i in kept]


def _as_label_list(labels) -> list:
    if isinstance(labels, np.ndarray | pd.Series):
        return list(np.asarray(labels))
    if isinstance(labels, Sequence) and not isinstance(labels, str):
        return list(labels)
    raise DataError(f"labels must be a list (one label per input), got a {type(labels).__name__}.")


def check_modality(data: LabeledData, modality: str | None) -> LabeledData:
    """Return `data`, refusing it when the caller's model reads the other modality."""
    if modality is not None and data.modality != modality:
        raise DataError(f"{data.name} is {data.modality} data, but the model reads {modality}s; "
                        f"give {modality} data.")
    return data
