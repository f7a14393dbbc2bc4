"""Issue 10, family 2: data means one thing in every format, and bad data is refused, never a hang."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hostile_kit import (assert_ok, assert_one_line, classes_of, fifo, fit_args, image_table, truncated_png,
                         undecodable_png)
from synthetic_data import NEGATIVE, POSITIVE


def _texts(n: int = 24) -> list[str]:
    pools = (NEGATIVE, POSITIVE)
    return [f"{pools[i % 2][i % 5]} {i}" for i in range(n)]


def _write(frame: pd.DataFrame, path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)


# ---- labels: "1" and "1.0" are one class in every format (or refused everywhere) ------------------------

def _mixed_labels(n: int) -> list:
    # Class "one" written both ways, class "zero" as 0: two classes, whatever the format.
    return [("1" if i % 4 == 1 else "1.0") if i % 2 else "0" for i in range(n)]


LABEL_CASES = [
    pytest.param("csv", "strings", id="csv-1-and-1.0"),
    pytest.param("jsonl", "strings", id="jsonl-strings-1-and-1.0"),
    pytest.param("jsonl", "numbers", id="jsonl-numbers-1-and-1.0"),
    pytest.param("parquet", "strings", id="parquet-strings-1-and-1.0"),
    pytest.param("parquet", "floats", id="parquet-floats-1.0"),
]


@pytest.mark.parametrize(("fmt", "kind"), LABEL_CASES)
def test_labels_1_and_1_0_are_one_class_in_every_format(tk, tmp_path, fmt, kind):
    texts = _texts()
    labels = _mixed_labels(len(texts))
    if kind == "numbers":
        path = tmp_path / "t.jsonl"  # json keeps 1 and 1.0 apart as written
        path.write_text("".join(json.dumps({"text": t, "label": 1 if v == "1" else (1.0 if v == "1.0" else 0)}) + "\n"
                                for t, v in zip(texts, labels)), encoding="utf-8")
    else:
        path = tmp_path / f"t.{fmt}"
        values = [float(v) for v in labels] if kind == "floats" else labels
        _write(pd.DataFrame({"text": texts, "label": values}), path)
    out = tmp_path / "run"
    result = tk(*fit_args(path, out))
    if result.code == 2:  # refusing the ambiguity is a rule too, if it says so in one line
        assert_one_line(result, 2, "label")
        return
    assert_ok(result)
    assert len(classes_of(out)) == 2, f"{fmt} {kind}: classes {classes_of(out)}"


# ---- targets and cells that are not what they seem ---------------------------------------------------------

def _regression_table(tmp_path, fmt: str, bad):
    texts = _texts()
    values = [float(i % 5 + 1) for i in range(len(texts))]
    values[4] = bad
    path = tmp_path / f"counts.{fmt}"
    if fmt == "jsonl":  # Python's json writes and reads Infinity; pandas would write null
        path.write_text("".join(json.dumps({"text": t, "label": v}) + "\n" for t, v in zip(texts, values)),
                        encoding="utf-8")
    else:
        _write(pd.DataFrame({"text": texts, "label": values}), path)
    return path


@pytest.mark.parametrize(("fmt", "bad"), [
    pytest.param("jsonl", float("inf"), id="jsonl-Infinity"),
    pytest.param("parquet", float("-inf"), id="parquet-minus-inf")])
def test_non_finite_regression_target_is_refused_with_its_row(tk, tmp_path, fmt, bad):
    out = tmp_path / "run"
    line = assert_one_line(tk(*fit_args(_regression_table(tmp_path, fmt, bad), out, "--task", "regression")), 2,
                           "label", "row 5")
    assert "inf" in line.lower()
    assert not out.exists()


def _cells(tmp_path, fmt: str, column: str, cell):
    texts, labels = _texts(), ["pos" if i % 2 else "neg" for i in range(24)]
    rows = [{"text": t, "label": v} for t, v in zip(texts, labels)]
    rows[2][column] = cell
    path = tmp_path / f"cells.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        frame = pd.DataFrame(rows)
        if isinstance(cell, list):
            frame[column] = [v if isinstance(v, list) else [v] for v in frame[column]]
        if isinstance(cell, bytes):
            frame[column] = [v if isinstance(v, bytes) else v.encode() for v in frame[column]]
        _write(frame, path)
    return path


CELL_CASES = [
    pytest.param("jsonl", "label", ["pos", "neg"], id="jsonl-list-label"),
    pytest.param("jsonl", "text", ["a", "list"], id="jsonl-list-text"),
    pytest.param("jsonl", "text", {"a": "struct"}, id="jsonl-object-text"),
    pytest.param("parquet", "label", ["pos"], id="parquet-list-label"),
    pytest.param("parquet", "text", b"raw bytes", id="parquet-bytes-text"),
]


@pytest.mark.parametrize(("fmt", "column", "cell"), CELL_CASES)
def test_non_scalar_cells_are_refused(tk, tmp_path, fmt, column, cell):
    out = tmp_path / "run"
    assert_one_line(tk(*fit_args(_cells(tmp_path, fmt, column, cell), out)), 2, column)
    assert not out.exists()


# ---- images: FIFOs, truncated and undecodable files -----------------------------------------------------

def test_fifo_in_a_table_is_refused_not_a_hang(tk, tmp_path, images):
    table, bad = image_table(tmp_path, images, "pipe.png", fifo)
    out = tmp_path / "run"
    assert_one_line(tk(*fit_args(table, out), timeout=20), 2, "pipe.png")
    assert not out.exists()


@pytest.mark.parametrize("make_bad", [
    pytest.param(truncated_png, id="truncated"),
    pytest.param(undecodable_png, id="undecodable-pixels")])
def test_bad_png_without_skip_is_one_line(tk, tmp_path, images, make_bad):
    table, bad = image_table(tmp_path, images, "bad.png", make_bad)
    out = tmp_path / "run"
    assert_one_line(tk("fit", "--data", table, "--model", "tiny-cnn", "--out", out), 2, "bad.png",
                    "--skip-bad-files")


@pytest.mark.parametrize("make_bad", [
    pytest.param(truncated_png, id="truncated"),
    pytest.param(undecodable_png, id="undecodable-pixels")])
def test_bad_png_with_skip_is_skipped_by_name(tk, tmp_path, images, make_bad):
    table, bad = image_table(tmp_path, images, "bad.png", make_bad)
    out = tmp_path / "run"
    result = tk("fit", "--data", table, "--model", "tiny-cnn", "--out", out, "--skip-bad-files")
    assert_ok(result)
    assert "bad.png" in result.text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_val"] + metrics["n_test"] == 36, "the bad image was not left out"


# ---- splits: empty and leaking ----------------------------------------------------------------------------

def test_empty_val_split_is_a_warning_that_says_why(tk, tmp_path):
    table = tmp_path / "few.csv"
    # 3 rows: 15% of 3 rounds to no validation item at all
    pd.DataFrame({"text": _texts(3), "label": ["pos", "neg", "pos"]}).to_csv(table, index=False)
    out = tmp_path / "run"
    result = tk(*fit_args(table, out, "--test-fraction", "0"))
    if result.code == 2:
        assert_one_line(result, 2, "val")
        return
    assert_ok(result)
    warnings = [line for line in result.lines if "warning" in line.lower() and "val" in line.lower()]
    assert warnings, f"an empty validation split passed without a word:\n{result.text}"


def test_test_items_duplicated_in_train_are_counted(tk, tmp_path):
    texts = _texts(30)
    labels = ["pos" if i % 2 else "neg" for i in range(30)]
    train = tmp_path / "train.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(train, index=False)
    test = tmp_path / "test.csv"  # 7 of its 10 rows are training rows, word for word
    pd.DataFrame({"text": texts[:7] + ["unseen one", "unseen two", "unseen three"],
                  "label": labels[:7] + ["pos", "neg", "pos"]}).to_csv(test, index=False)
    out = tmp_path / "run"
    result = tk(*fit_args(train, out, "--test-data", test, "--val-fraction", "0", "--test-fraction", "0"))
    assert_ok(result)
    leaks = [line for line in result.lines if "warning" in line.lower() and "test" in line.lower()]
    assert leaks and any(" 7 " in f" {line} " or "7 of" in line for line in leaks), result.text[-2000:]
