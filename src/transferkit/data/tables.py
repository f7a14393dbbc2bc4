"""Tables (.csv, .jsonl, .parquet) with a text or image-path column and a label column."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from transferkit.data.dataset import RawPart
from transferkit.data.images import keep_readable
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
    path: Path, *, task: str, text_column: str, image_column: str, label_column: str,
    require_labels: bool, skip_bad_files: bool,
) -> tuple[RawPart, str]:
    """Read a table into a raw part and its modality ("text" if the text column exists, else "image").

    Raises:
        DataError: unsupported extension, empty table, missing columns or values, bad targets or images.
    """
    frame = read_table(path)
    modality = _modality(frame, path, text_column, image_column)
    column = text_column if modality == "text" else image_column
    if label_column not in frame.columns:
        if require_labels:
            raise DataError(
                f"{path} has no label column {label_column!r}; columns found: {_columns(frame)}. "
                f"Name the right one with --label-column."
            )
        labels = None
    else:
        labels = _labels(frame[label_column], path, label_column, task)
    _refuse_missing(frame[column], path, column)
    if modality == "text":
        return RawPart([str(v) for v in frame[column]], labels), modality
    return _image_part(frame[column], labels, path, skip_bad_files), modality


def read_table(path: Path) -> pd.DataFrame:
    """Read a table file by its extension; refuse unknown extensions and empty tables."""
    ext = path.suffix.lower()
    if ext not in TABLE_READERS:
        raise DataError(
            f"Unsupported data file {path} (extension {ext or 'none'!r}); give an image folder or a table "
            f"with one of the extensions {', '.join(TABLE_READERS.names())}."
        )
    frame = TABLE_READERS.get(ext)(path)
    if len(frame) == 0:
        raise DataError(f"Table {path} is empty (no data rows); add rows below the header.")
    return frame


def _columns(frame: pd.DataFrame) -> str:
    return ", ".join(repr(str(c)) for c in frame.columns)


def _modality(frame: pd.DataFrame, path: Path, text_column: str, image_column: str) -> str:
    if text_column in frame.columns:
        return "text"
    if image_column in frame.columns:
        return "image"
    raise DataError(
        f"{path} has neither a text column {text_column!r} nor an image column {image_column!r}; "
        f"columns found: {_columns(frame)}. Name them with {COLUMN_FLAGS}."
    )


def _refuse_missing(values: pd.Series, path: Path, column: str) -> None:
    missing = np.flatnonzero(values.isna().to_numpy())
    if len(missing):
        raise DataError(
            f"{path}: column {column!r} is empty in {len(missing)} of {len(values)} rows (first at data row "
            f"{missing[0] + 1}); fill in or remove those rows."
        )


def _labels(values: pd.Series, path: Path, column: str, task: str) -> list:
    _refuse_missing(values, path, column)
    if task == "classification":
        return [_label_name(v) for v in values]
    numbers = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy())
    if len(bad):
        raise DataError(
            f"{path}: regression target column {column!r} holds non-numeric values, e.g. {values.iloc[bad[0]]!r} "
            f"(data row {bad[0] + 1}, {len(bad)} rows in all); use numbers, or --task classification."
        )
    return numbers.to_numpy(dtype=np.float32).tolist()


def _label_name(value) -> str:
    # Integral floats (parquet/jsonl may store 3 as 3.0) name the same class as the integer.
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _image_part(values: pd.Series, labels: list | None, path: Path, skip_bad_files: bool) -> RawPart:
    folder = path.parent
    paths = [os.path.normpath(os.path.join(folder, str(v))) for v in values]
    keep = keep_readable(paths, skip_bad_files=skip_bad_files, where=str(path))
    if not keep:
        raise DataError(f"No readable images remain in {path} after skipping unreadable files.")
    return RawPart([paths[i] for i in keep], None if labels is None else [labels[i] for i in keep])
