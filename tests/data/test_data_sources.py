import json
import logging

import numpy as np
import pandas as pd
import pytest

from transferkit.data import load_data
from transferkit.errors import ConfigError, DataError


# Image folders

def test_image_folder_loads_sorted_classes(image_folder):
    parts = load_data(str(image_folder))
    assert list(parts) == ["all"]
    data = parts["all"]
    assert (data.modality, data.task, data.classes) == ("image", "classification", ["cat", "dog"])
    assert data.class_counts() == {"cat": 3, "dog": 4}
    assert all(isinstance(p, str) and p.endswith(".png") for p in data.inputs)
    assert data.name == str(image_folder)


def test_predefined_parts_share_union_of_classes(tmp_path, make_class_folder):
    root = tmp_path / "d"
    make_class_folder(root / "train", {"b": 2, "c": 2})
    make_class_folder(root / "val", {"a": 1, "b": 1})
    parts = load_data(str(root))
    assert list(parts) == ["train", "val"]
    assert parts["train"].classes == parts["val"].classes == ["a", "b", "c"]
    assert parts["val"].class_counts() == {"a": 1, "b": 1, "c": 0}
    assert parts["train"].targets.tolist() == [1, 1, 2, 2]


def test_nested_images_and_hidden_files(tmp_path, make_class_folder, make_image):
    root = make_class_folder(tmp_path / "d", {"a": 1, "b": 1})
    make_image(root / "a" / "sub" / "deep.jpg")
    make_image(root / "a" / ".hidden.png")
    (root / "a" / "notes.txt").write_text("not an image")
    assert load_data(str(root))["all"].class_counts() == {"a": 2, "b": 1}


def test_flat_folder_unlabeled_when_allowed(tmp_path, make_image):
    for i in range(3):
        make_image(tmp_path / "flat" / f"{i}.bmp")
    data = load_data(str(tmp_path / "flat"), require_labels=False)["all"]
    assert len(data) == 3 and data.targets is None and data.classes is None


def test_flat_folder_needs_labels(tmp_path, make_image):
    make_image(tmp_path / "flat" / "0.png")
    with pytest.raises(DataError, match="holds 1 images but no class subfolders"):
        load_data(str(tmp_path / "flat"))


def test_missing_path():
    with pytest.raises(DataError, match="Data path does not exist: /no/such/place"):
        load_data("/no/such/place")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"Image folder .*empty is empty"):
        load_data(str(tmp_path / "empty"))


def test_class_folder_without_images_is_named(tmp_path, make_class_folder):
    root = make_class_folder(tmp_path / "d", {"a": 2, "b": 2})
    (root / "ghost").mkdir()
    (root / "ghost" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="Class folder 'ghost' .* has no images"):
        load_data(str(root))


def test_single_class_is_refused(tmp_path, make_class_folder):
    root = make_class_folder(tmp_path / "d", {"only": 3})
    with pytest.raises(DataError, match="has only one class \\('only'\\)"):
        load_data(str(root))


def test_corrupt_image_is_named(image_folder):
    (image_folder / "dog" / "bad.jpg").write_bytes(b"garbage bytes")
    with pytest.raises(DataError, match=r"Unreadable image file .*bad\.jpg .*--skip-bad-files"):
        load_data(str(image_folder))


def test_skip_bad_files_warns_per_file(image_folder, caplog):
    (image_folder / "dog" / "bad1.jpg").write_bytes(b"garbage")
    (image_folder / "cat" / "bad2.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        data = load_data(str(image_folder), skip_bad_files=True)["all"]
    assert data.class_counts() == {"cat": 3, "dog": 4}
    skipped = [r.getMessage() for r in caplog.records if "Skipping" in r.getMessage()]
    assert len(skipped) == 2
    assert any("bad1.jpg" in m for m in skipped) and any("bad2.png" in m for m in skipped)


def test_skip_bad_files_still_fails_when_a_class_is_left_empty(image_folder, tmp_path):
    (image_folder / "eel").mkdir()
    (image_folder / "eel" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="Class folder 'eel' .* no readable images left"):
        load_data(str(image_folder), skip_bad_files=True)


def test_split_folders_mixed_with_class_folders(tmp_path, make_class_folder):
    root = make_class_folder(tmp_path / "d", {"train": 1, "cat": 1})
    with pytest.raises(DataError, match=r"mixes split folders \(train\) with other folders \(cat\)"):
        load_data(str(root))


def test_folder_regression_is_refused(image_folder):
    with pytest.raises(ConfigError, match="gives class labels"):
        load_data(str(image_folder), task="regression")


def test_unknown_task(image_folder):
    with pytest.raises(ConfigError, match="Unknown task 'clasification'. Did you mean 'classification'"):
        load_data(str(image_folder), task="clasification")


# Tables

def test_csv_text_table(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": ["good", "NA", "bad"], "label": ["pos", "neg", "neg"]}).to_csv(path, index=False)
    data = load_data(str(path))["all"]
    assert (data.modality, data.classes) == ("text", ["neg", "pos"])
    assert data.inputs == ["good", "NA", "bad"]
    assert data.targets.tolist() == [1, 0, 0]


def test_jsonl_with_renamed_columns(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"sentence": "x", "y": 1}, {"sentence": "y", "y": 0}, {"sentence": "z", "y": 1}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    data = load_data(str(path), text_column="sentence", label_column="y")["all"]
    assert data.classes == ["0", "1"] and data.targets.tolist() == [1, 0, 1]


def test_parquet_image_table_resolves_relative_paths(tmp_path, make_image):
    make_image(tmp_path / "imgs" / "a.png")
    make_image(tmp_path / "imgs" / "b.png", mode="L")
    path = tmp_path / "t.parquet"
    pd.DataFrame({"image": ["imgs/a.png", "imgs/b.png"], "label": [3.0, 7.0]}).to_parquet(path)
    data = load_data(str(path))["all"]
    assert data.modality == "image"
    assert data.inputs == [str(tmp_path / "imgs" / "a.png"), str(tmp_path / "imgs" / "b.png")]
    assert data.classes == ["3", "7"]


def test_regression_table(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\na,1.5\nb,-2\n", encoding="utf-8")
    data = load_data(str(path), task="regression")["all"]
    assert data.classes is None
    assert data.targets.dtype == np.float32 and data.targets.tolist() == [1.5, -2.0]


def test_table_without_labels_when_allowed(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("text\nhello\nworld\n", encoding="utf-8")
    data = load_data(str(path), require_labels=False)["all"]
    assert data.targets is None and data.inputs == ["hello", "world"]


def test_missing_label_column_lists_columns(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("text,stars\nhello,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="no label column 'label'; columns found: 'text', 'stars'.*--label-column"):
        load_data(str(path))


def test_missing_input_column_names_the_flags(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("body,label\nhello,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="neither a text column 'text' nor an image column 'image'; "
                                        "columns found: 'body', 'label'. Name them with --text-column"):
        load_data(str(path))


@pytest.mark.parametrize("content", ["", "text,label\n"])
def test_empty_table(tmp_path, content):
    path = tmp_path / "e.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=r"Table .*e\.csv is empty"):
        load_data(str(path))


def test_table_with_one_class(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("text,label\na,x\nb,x\n", encoding="utf-8")
    with pytest.raises(DataError, match="only one class \\('x'\\)"):
        load_data(str(path))


def test_non_numeric_regression_target_is_named(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\na,1.5\nb,high\nc,2\n", encoding="utf-8")
    with pytest.raises(DataError, match="non-numeric values, e.g. 'high' \\(data row 2"):
        load_data(str(path), task="regression")


def test_missing_labels_are_counted(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("text,label\na,x\nb,\nc,y\nd,\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"'label' is empty \(missing or NaN\) in 2 of 4 rows \(first at data row 2\)"):
        load_data(str(path))


def test_missing_texts_are_counted(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("text,label\na,x\n,y\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"'text' is empty \(missing or NaN\) in 1 of 2 rows \(first at data row 2\)"):
        load_data(str(path))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_non_utf8_table(tmp_path, suffix):
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes("text,label\ncaf\u00e9,x\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not valid UTF-8 .*re-save it as UTF-8"):
        load_data(str(path))


def test_invalid_jsonl_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_data(str(path))


def test_unsupported_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match=r"Unsupported data file .*extension '.xlsx'.*\.csv, \.jsonl, \.parquet"):
        load_data(str(path))


def test_image_table_with_missing_file(tmp_path, make_image):
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "c.png")
    path = tmp_path / "t.csv"
    path.write_text("image,label\na.png,x\nmissing.png,y\nc.png,y\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"missing\.png \(file not found\)"):
        load_data(str(path))
    data = load_data(str(path), skip_bad_files=True)["all"]
    assert data.class_counts() == {"x": 1, "y": 1}
