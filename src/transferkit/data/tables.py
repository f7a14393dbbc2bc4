"""Tables (.csv, .jsonl, .parquet) with a text or image-path column and a label column."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from PIL import Image

from transferkit.data.dataset import RawPart
from transferkit.data.images import image_arrays, keep_readable, not_regular
from transferkit.data.labels import label_names, regression_targets, scalar_kind, text_cells
from transferkit.errors import DataError
from transferkit.registry import Registry

TableReader = Callable[[Path], pd.DataFrame]

#: Table readers by file extension (lower case, with the dot); register more with `TABLE_READERS.register`.
TABLE_READERS: Registry[TableReader] = Registry("table format")

COLUMN_FLAGS = "--text-column, --image-column, --label-column"


def _read_utf8(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "re-save it as UTF-8."
        ) from exc


@TABLE_READERS.register(".csv")
def read_csv(path: Path) -> pd.DataFrame:
    """Read every column as text; only empty cells count as missing (a review saying "NA" stays)."""
    text = _read_utf8(path)
    if not text.strip():
        return pd.DataFrame()
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} is not a valid CSV table ({str(exc).strip()}); check quoting and delimiters.") from exc


@TABLE_READERS.register(".jsonl")
def read_jsonl(path: Path) -> pd.DataFrame:
    """Read one JSON object per line; blank lines are allowed."""
    records = []
    for number, line in enumerate(_read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number} is not valid JSON ({exc.msg}); write one object per line.") from exc
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number} is not a JSON object; write one object per line.")
        records.append(record)
    return pd.DataFrame.from_records(records)


@TABLE_READERS.register(".parquet")
def read_parquet(path: Path) -> pd.DataFrame:
    """Read a parquet file with pyarrow."""
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own exception types for malformed files
        raise DataError(f"{path} is not a readable parquet file ({str(exc).strip()}).") from exc


def load_table(
    path: Path, *, task: str, text_column: str, image_column: str, label_column: str | None,
    require_labels: bool, skip_bad_files: bool, modality: str | None = None,
) -> tuple[RawPart, str]:
    """Read a table file into a raw part and its modality ("text" if the text column exists, else "image").

    Raises:
        DataError: unsupported extension, empty table, missing columns or values, bad targets or images.
    """
    columns = Columns(text_column, image_column, label_column)
    return frame_part(read_table(path), where=str(path), folder=path.parent, columns=columns, task=task,
                      require_labels=require_labels, skip_bad_files=skip_bad_files, modality=modality)


class Columns(NamedTuple):
    """Column names of a table, and how the user names them (flags on the command line, keywords in Python)."""

    text: str
    image: str
    label: str | None
    how: str = COLUMN_FLAGS


def frame_part(
    frame: pd.DataFrame, *, where: str, folder: Path | None, columns: Columns, task: str,
    require_labels: bool, skip_bad_files: bool, modality: str | None = None,
) -> tuple[RawPart, str]:
    """Turn a table (read from a file, or a user's DataFrame) into a raw part and its modality.

    Args:
        frame: the table.
        where: the source, for messages.
        folder: where relative image paths start (the table's folder; None for the working directory).
        columns: column names.
        task: "classification" or "regression".
        require_labels: refuse a table without the label column.
        skip_bad_files: leave unreadable images out with a warning instead of failing.
        modality: the modality the caller needs; None to take it from the columns present.
    """
    modality = modality or _modality(frame, where, columns)
    column = columns.text if modality == "text" else columns.image
    if column not in frame.columns:
        raise DataError(f"{where} has no {modality} column {column!r}; columns found: {_columns(frame)}. "
                        f"Name it with {_option(columns.how, modality)}.")
    if columns.label is None or columns.label not in frame.columns:
        if require_labels:
            raise DataError(
                f"{where} has no label column {columns.label!r}; columns found: {_columns(frame)}. "
                f"Name the right one with {_option(columns.how, 'label')}."
            )
        labels = None
    else:
        labels = _labels(frame[columns.label], where, columns.label, task)
    _refuse_missing(frame[column], where, column)
    if modality == "text":
        return RawPart(text_cells(_cells(frame[column]), where, column), labels), modality
    return _image_part(frame[column], labels, where, column, folder, skip_bad_files), modality


def _option(how: str, kind: str) -> str:
    return next((o for o in how.split(", ") if kind in o), how)


def read_table(path: Path) -> pd.DataFrame:
    """Read a table file by its extension; refuse unknown extensions, non-regular files and empty tables."""
    ext = path.suffix.lower()
    if ext not in TABLE_READERS:
        raise DataError(
            f"Unsupported data file {path} (extension {ext or 'none'!r}); give an image folder or a table "
            f"with one of the extensions {', '.join(TABLE_READERS.names())}."
        )
    problem = not_regular(path)
    if problem:
        raise DataError(f"Data file {path} is {problem}; give a table file or an image folder.")
    frame = TABLE_READERS.get(ext)(path)
    if len(frame) == 0:
        raise DataError(f"Table {path} is empty (no data rows); add rows below the header.")
    return frame


def _columns(frame: pd.DataFrame) -> str:
    return ", ".join(repr(str(c)) for c in frame.columns)


def _modality(frame: pd.DataFrame, where: str, columns: Columns) -> str:
    if columns.text in frame.columns:
        return "text"
    if columns.image in frame.columns:
        return "image"
    raise DataError(
        f"{where} has neither a text column {columns.text!r} nor an image column {columns.image!r}; "
        f"columns found: {_columns(frame)}. Name them with {columns.how}."
    )


def _refuse_missing(values: pd.Series, where: str, column: str) -> None:
    missing = np.flatnonzero(_isna(values))
    if len(missing):
        raise DataError(
            f"{where}: column {column!r} is empty (missing or NaN) in {len(missing)} of {len(values)} rows "
            f"(first at data row {missing[0] + 1}); fill in or remove those rows."
        )


def _isna(values: pd.Series) -> np.ndarray:
    # Series.isna is elementwise only for scalars; a list or array cell is "present" (and refused later).
    return np.array([scalar_kind(v) is not None and bool(pd.isna(v)) or v is None or v is pd.NA
                     for v in values.to_numpy(dtype=object)], dtype=bool)


def _cells(values: pd.Series) -> np.ndarray:
    # Native numpy values keep float32 as float32, so 0.1f names the class "0.1" as a csv would.
    return values.to_numpy() if values.dtype != object else values.to_numpy(dtype=object)


def _labels(values: pd.Series, where: str, column: str, task: str) -> list:
    _refuse_missing(values, where, column)
    if task == "classification":
        return label_names(_cells(values), where, column)
    return regression_targets(_cells(values), where, column)


def _image_part(values: pd.Series, labels: list | None, where: str, column: str, folder: Path | None,
                skip_bad_files: bool) -> RawPart:
    cells = list(values.to_numpy(dtype=object))
    arrays = [i for i, v in enumerate(cells) if isinstance(v, np.ndarray | Image.Image)]
    if arrays and folder is None:
        return RawPart(image_arrays(cells, where), labels)
    bad = next((i for i, v in enumerate(cells) if not isinstance(v, str | os.PathLike)), None)
    if bad is not None:
        raise DataError(
            f"{where}: column {column!r} holds a {type(cells[bad]).__name__} in data row {bad + 1}; "
            "an image column holds file paths" + ("" if folder is not None else " or, in a DataFrame, "
                                                  "images (PIL images or numpy arrays), all of one kind") + "."
        )
    paths = [os.path.normpath(os.path.join(folder or "", os.fspath(v))) for v in cells]
    keep = keep_readable(paths, skip_bad_files=skip_bad_files, where=where)
    if not keep:
        raise DataError(f"No readable images remain in {where} after skipping unreadable files.")
    return RawPart([paths[i] for i in keep], None if labels is None else [labels[i] for i in keep])
