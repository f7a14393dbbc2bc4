"""Cell values to labels, targets and texts, by one rule for every source (csv, jsonl, parquet, DataFrame, folders).

The label rule (classification):

1. A label cell must be a scalar: text, an integer, a float or a boolean. Lists, dicts, structs,
   arrays and bytes are refused naming the column and row; they are never turned into strings.
2. Surrounding whitespace is removed: ``" cat "`` names the class ``"cat"``.
3. A label that reads as a finite number names the class of that number, written in its shortest
   form: ``1``, ``1.0``, ``"1"``, ``"1.0"``, ``" 1"``, ``"+1"`` and ``"1e0"`` are all class ``"1"``;
   ``0.50`` and ``"0.5"`` are class ``"0.5"``. A csv reads every cell as text and parquet or jsonl
   may store the same labels as integers or floats, so this is what makes one table mean the same
   in every format.
4. A boolean (``true`` in jsonl, a parquet bool column, ``"True"`` or ``"false"`` in a csv, in any
   case) is the class ``"true"`` or ``"false"``.
5. Any other text is a class name as written. Two spellings that differ only by case, inner
   whitespace or Unicode form (``"Cat"`` and ``"cat"``, ``"cat"`` and ``"cat "`` in the raw cells,
   ``"big cat"`` and ``"big  cat"``) are refused, naming both: they are never silently merged
   (they may be one class) nor silently split (they may be two).

Regression targets must be finite numbers (text that reads as one is fine); ``inf``, ``nan``,
booleans and values beyond float32 range are refused with the row number.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from decimal import Decimal

import numpy as np

from transferkit.errors import DataError

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_BOOLEANS = {"true": "true", "false": "false"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Integral labels up to this size are written as plain integers; larger ones keep exponent form.
_PLAIN_DIGITS = 30


def scalar_kind(value) -> str | None:
    """"text", "bool", "number" for the cell types a label or text may hold, else None."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, int | float | np.integer | np.floating):
        return "number"
    return None


def _refuse_cell(value, where: str, column: str, row: int, what: str) -> DataError:
    kind = _NON_SCALAR_NAMES.get(type(value).__name__, type(value).__name__)
    return DataError(
        f"{where}: column {column!r} holds a {kind} value in data row {row} ({_short(value)}); {what} must be "
        "plain text or numbers, one per cell; flatten that column before loading."
    )


# Parquet list columns arrive as numpy arrays and struct columns as dicts.
_NON_SCALAR_NAMES = {"ndarray": "list (array)", "dict": "struct (dict)"}


def _short(value, limit: int = 40) -> str:
    text = repr(value) if isinstance(value, str | bytes) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number_text(value) -> str:
    """Shortest decimal text of a number; np.float32 keeps its own shortest form (0.1, not 0.100000001)."""
    if isinstance(value, np.floating):
        return str(value)
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def canonical_number(text: str) -> str | None:
    """The class name of a label text that reads as a finite number ("1.0" -> "1"), else None."""
    if not _NUMBER.fullmatch(text):
        return None
    number = Decimal(text)
    if number == number.to_integral_value() and number.adjusted() < _PLAIN_DIGITS:
        return str(int(number))
    return format(number.normalize(), "f") if abs(number.adjusted()) < _PLAIN_DIGITS else str(number.normalize())


def label_name(value, where: str, column: str, row: int) -> str:
    """The class name of one label cell under the module's rule; `row` is 1-based, for messages."""
    kind = scalar_kind(value)
    if kind is None:
        raise _refuse_cell(value, where, column, row, "labels")
    if kind == "bool":
        return "true" if value else "false"
    if kind == "number":
        if not math.isfinite(float(value)):
            raise DataError(f"{where}: label column {column!r} holds {value!r} in data row {row}; "
                            "use a class name or a finite number.")
        text = _number_text(value)
    else:
        text = value.strip()
    return _BOOLEANS.get(text.lower()) or canonical_number(text) or text


def label_names(values: Iterable, where: str, column: str) -> list[str]:
    """Class names of label cells (see the module docstring); refuses spellings of one label that differ.

    Raises:
        DataError: a non-scalar or non-finite cell, or two spellings differing only by case or whitespace.
    """
    names, raw_by_name = [], {}
    for row, value in enumerate(values, start=1):
        name = label_name(value, where, column, row)
        names.append(name)
        raw_by_name.setdefault(name, {})
        if isinstance(value, str):
            raw_by_name[name].setdefault(value, row)
    _check_spellings(raw_by_name, where, column)
    return names


def check_label_spellings(names: Sequence[str], where: str, column: str = "label") -> None:
    """Refuse class names (already canonical, e.g. folder names) that differ only by case or whitespace."""
    _check_spellings({name: {name: 0} for name in names}, where, column)


def _check_spellings(raw_by_name: dict[str, dict[str, int]], where: str, column: str) -> None:
    for name, raws in raw_by_name.items():
        texts = [raw for raw in raws if canonical_number(raw.strip()) is None and raw.strip().lower() not in _BOOLEANS]
        if len(texts) > 1:
            first, second = texts[:2]
            raise _spelling_error(where, column, first, second, "surrounding whitespace")
    seen: dict[str, str] = {}
    for name in raw_by_name:
        key = " ".join(unicodedata.normalize("NFKC", name).casefold().split())
        if key in seen:
            raise _spelling_error(where, column, seen[key], name, "case, inner whitespace or Unicode form")
        seen[key] = name


def _spelling_error(where: str, column: str, first: str, second: str, how: str) -> DataError:
    return DataError(
        f"{where}: labels {first!r} and {second!r} in column {column!r} differ only by {how}; "
        "write them one way if they are one class, or rename one if they are two."
    )


def regression_targets(values: Iterable, where: str, column: str) -> list[float]:
    """Finite float32-representable targets of a regression column.

    Raises:
        DataError: a non-scalar, boolean, non-numeric or non-finite cell, naming its row.
    """
    targets = []
    for row, value in enumerate(values, start=1):
        kind = scalar_kind(value)
        if kind is None:
            raise _refuse_cell(value, where, column, row, "regression targets")
        if kind == "bool" or (kind == "text" and not _NUMBER.fullmatch(value.strip()) and not _non_finite(value)):
            raise DataError(
                f"{where}: regression target column {column!r} holds non-numeric values, e.g. {_short(value)} "
                f"(data row {row}); use numbers, or --task classification."
            )
        number = float(value.strip() if kind == "text" else value)
        if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
            raise DataError(
                f"{where}: regression target column {column!r} holds {_short(value)} in data row {row}; targets "
                "must be finite numbers within float32 range: fix or remove that row."
            )
        targets.append(number)
    return targets


def _non_finite(text: str) -> bool:
    return text.strip().lower().lstrip("+-") in ("inf", "infinity", "nan")


def text_cells(values: Iterable, where: str, column: str) -> list[str]:
    """Texts of a text column: strings as they are, numbers as their shortest text; others refused."""
    texts = []
    for row, value in enumerate(values, start=1):
        kind = scalar_kind(value)
        if kind is None:
            raise _refuse_cell(value, where, column, row, "texts")
        texts.append(value if kind == "text" else _number_text(value) if kind == "number" else str(value).lower())
    return texts
