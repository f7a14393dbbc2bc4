"""One label rule in csv, jsonl, parquet, DataFrames and folders (transferkit.data.labels)."""

import json

import numpy as np
import pandas as pd
import pytest

from transferkit.data import load_data, make_splits
from transferkit.data.labels import canonical_number
from transferkit.errors import DataError

FORMATS = (".csv", ".jsonl", ".parquet")


def write_table(frame: pd.DataFrame, path):
    """Write `frame` the way each format's usual writer stores it (csv as text, jsonl and parquet typed)."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict(orient="records")), encoding="utf-8")
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("labels", [
    [1, 2, 1, 2],                   # int column: csv "1", jsonl 1, parquet int64
    [1.0, 2.0, 1.0, 2.0],           # float column: csv "1.0", jsonl 1.0, parquet float64
    ["1", "2.0", " 1", "+2"],       # text spellings of the same numbers
    ["1e0", "2", "1.00", "2"],
], ids=["int", "float", "text-spellings", "exponent"])
@pytest.mark.parametrize("suffix", FORMATS)
def test_numeric_labels_name_one_class_in_every_format(tmp_path, labels, suffix):
    frame = pd.DataFrame({"text": list("abcd"), "label": labels})
    data = load_data(str(write_table(frame, tmp_path / f"t{suffix}")))["all"]
    assert data.classes == ["1", "2"]
    assert data.targets.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("suffix", FORMATS)
def test_float32_parquet_and_text_agree(tmp_path, suffix):
    frame = pd.DataFrame({"text": list("abc"), "label": np.array([0.1, 0.5, 0.1], dtype=np.float32 if
                                                                  suffix == ".parquet" else np.float64)})
    assert load_data(str(write_table(frame, tmp_path / f"t{suffix}")))["all"].classes == ["0.1", "0.5"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_booleans_are_true_and_false_in_every_format(tmp_path, suffix):
    # pandas writes a bool column to csv as "True"/"False"; jsonl and parquet keep booleans.
    frame = pd.DataFrame({"text": list("abc"), "label": [True, False, True]})
    data = load_data(str(write_table(frame, tmp_path / f"t{suffix}")))["all"]
    assert data.classes == ["false", "true"] and data.targets.tolist() == [1, 0, 1]


def test_canonical_number_forms():
    assert [canonical_number(t) for t in ("1", "1.0", "+1", "01", "1e0", "-0", "0.50", "2.5e-3")] == \
        ["1", "1", "1", "1", "1", "0", "0.5", "0.0025"]
    assert [canonical_number(t) for t in ("1,0", "nan", "inf", "1.0.0", "", "0x10", "one")] == [None] * 7


def test_train_csv_and_test_jsonl_agree_on_classes(tmp_path):
    train = write_table(pd.DataFrame({"text": list("abcdefgh"), "label": ["1", "2"] * 4}), tmp_path / "a.csv")
    test = write_table(pd.DataFrame({"text": list("xy"), "label": [2.0, 1.0]}), tmp_path / "b.jsonl")
    splits = make_splits(load_data(str(train)), test_data=load_data(str(test), min_classes=1)["all"],
                         val_fraction=0.25, test_fraction=0.0)
    assert splits["test"].classes == ["1", "2"] and splits["test"].targets.tolist() == [1, 0]


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("labels, message", [
    (["Cat", "cat", "dog"], r"labels 'Cat' and 'cat' in column 'label' differ only by case"),
    (["cat", "cat ", "dog"], r"labels 'cat' and 'cat ' in column 'label' differ only by surrounding whitespace"),
    (["big cat", "big  cat", "dog"], r"labels 'big cat' and 'big  cat' .* differ only by case, inner whitespace"),
    (["caf\u00e9", "cafe\u0301", "dog"], r"differ only by case, inner whitespace or Unicode form"),
])
def test_spelling_variants_are_refused_naming_both(tmp_path, suffix, labels, message):
    frame = pd.DataFrame({"text": list("abc"), "label": labels})
    with pytest.raises(DataError, match=message):
        load_data(str(write_table(frame, tmp_path / f"t{suffix}")))


def test_surrounding_whitespace_alone_is_stripped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('text,label\na," cat"\nb,dog \n', encoding="utf-8")
    assert load_data(str(path))["all"].classes == ["cat", "dog"]


def test_class_folders_follow_the_same_rule(tmp_path, make_class_folder):
    root = make_class_folder(tmp_path / "d", {"1.0": 1, "2": 1})
    assert load_data(str(root))["all"].classes == ["1", "2"]
    make_class_folder(tmp_path / "e", {"Cat": 1, "cat": 1})
    with pytest.raises(DataError, match="'Cat' and 'cat' in column 'class folder' differ only by case"):
        load_data(str(tmp_path / "e"))


def test_case_variants_across_split_folders_are_refused(tmp_path, make_class_folder):
    make_class_folder(tmp_path / "d" / "train", {"cat": 2, "dog": 2})
    make_class_folder(tmp_path / "d" / "val", {"Cat": 1, "dog": 1})
    with pytest.raises(DataError, match="'Cat' and 'cat' .* differ only by case"):
        load_data(str(tmp_path / "d"))


# Non-scalar cells

@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@pytest.mark.parametrize("column, cells, kind", [
    ("label", [[1], [2], [1]], r"list( \(array\))?"),
    ("label", [{"a": 1}, {"a": 2}, {"a": 1}], r"struct \(dict\)|dict"),
    ("text", [{"t": "x"}, {"t": "y"}, {"t": "z"}], r"struct \(dict\)|dict"),
    ("text", [["a", "b"], ["c"], ["d"]], r"list( \(array\))?"),
])
def test_non_scalar_cells_are_refused_by_column_and_row(tmp_path, suffix, column, cells, kind):
    frame = pd.DataFrame({"text": list("abc"), "label": ["x", "y", "x"]})
    frame[column] = cells
    with pytest.raises(DataError, match=rf"column '{column}' holds a ({kind}) value in data row 1 .* flatten"):
        load_data(str(write_table(frame, tmp_path / f"t{suffix}")))


def test_bytes_cells_in_parquet_are_refused(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": [b"a", b"b"], "label": ["x", "y"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"column 'text' holds a bytes value in data row 1 \(b'a'\)"):
        load_data(str(path))
    pd.DataFrame({"image": [b"\x89PNG", b"\x89PNG"], "label": ["x", "y"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"column 'image' holds a bytes in data row 1; an image column holds file"):
        load_data(str(path))


def test_non_scalar_regression_target_is_refused(tmp_path):
    path = write_table(pd.DataFrame({"text": list("ab"), "label": [[1.0], [2.0]]}), tmp_path / "t.jsonl")
    with pytest.raises(DataError, match="column 'label' holds a list value in data row 1 .*regression targets"):
        load_data(str(path), task="regression")


# Non-finite regression targets

@pytest.mark.parametrize("value", ["inf", "-Infinity", "nan", "NaN", "1e39"])
def test_non_finite_csv_targets_name_file_and_row(tmp_path, value):
    path = tmp_path / "r.csv"
    path.write_text(f"text,label\na,1\nb,2\nc,{value}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"r\.csv: regression target column 'label' holds '{value}' in data row 3; "
                                        "targets must be finite"):
        load_data(str(path), task="regression")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_infinite_typed_targets_are_refused(tmp_path, suffix):
    path = tmp_path / f"r{suffix}"
    if suffix == ".jsonl":  # Python's json writes the non-standard Infinity literal, which json.loads reads back
        path.write_text('{"text": "a", "label": 1.5}\n{"text": "b", "label": Infinity}\n', encoding="utf-8")
    else:
        pd.DataFrame({"text": ["a", "b"], "label": [1.5, float("inf")]}).to_parquet(path)
    with pytest.raises(DataError, match=r"holds inf in data row 2; targets must be finite"):
        load_data(str(path), task="regression")


def test_nan_in_typed_formats_is_reported_as_missing(tmp_path):
    path = tmp_path / "r.parquet"
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1.5, float("nan"), 2.0]}).to_parquet(path)
    with pytest.raises(DataError, match=r"'label' is empty \(missing or NaN\) in 1 of 3 rows \(first at data row 2\)"):
        load_data(str(path), task="regression")


def test_boolean_regression_targets_are_refused(tmp_path):
    path = write_table(pd.DataFrame({"text": list("ab"), "label": [True, False]}), tmp_path / "r.jsonl")
    with pytest.raises(DataError, match="non-numeric values, e.g. True \\(data row 1\\)"):
        load_data(str(path), task="regression")


def test_regression_text_numbers_read_the_same_in_every_format(tmp_path):
    values = []
    for suffix in FORMATS:
        frame = pd.DataFrame({"text": list("abc"), "label": [1.5, -2.0, 3e3]})
        values.append(load_data(str(write_table(frame, tmp_path / f"r{suffix}")), task="regression")["all"]
                      .targets.tolist())
    assert values == [[1.5, -2.0, 3000.0]] * 3
