"""Python objects as data: DataFrames, lists of paths, PIL images, arrays and texts; `as_inputs` for prediction."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from transferkit.data import LabeledData, as_inputs, load_data, make_loader, make_splits
from transferkit.backbones.base import DataSpec
from transferkit.errors import ConfigError, DataError


def reviews(n: int = 60) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"text number {i}" for i in range(n)], "stars": [i % 3 for i in range(n)]})


# DataFrames

def test_dataframe_reads_like_a_table():
    data = load_data(reviews(), text_column="review", label_column="stars")["all"]
    assert (data.modality, data.classes, len(data)) == ("text", ["0", "1", "2"], 60)
    assert data.inputs[5] == "text number 5" and data.targets[5] == 2
    assert data.name == "DataFrame (60 rows)"


def test_predicting_a_dataframe_gives_one_input_per_row():
    # The bug this replaces: list(df) iterates column names, so 60 rows gave 2 predictions.
    inputs = as_inputs(reviews(), "text", text_column="review")
    assert len(inputs) == 60 and inputs.inputs[:2] == ["text number 0", "text number 1"]
    assert inputs.targets is None


def test_dataframe_without_the_needed_column_names_columns_and_keyword():
    with pytest.raises(DataError, match=r"DataFrame \(60 rows\) has no text column 'text'; columns found: "
                                        r"'review', 'stars'. Name it with text_column=\."):
        as_inputs(reviews(), "text")
    with pytest.raises(DataError, match=r"no label column 'label'; columns found: 'review', 'stars'. "
                                        r"Name the right one with label_column=\."):
        load_data(reviews(), text_column="review")


def test_dataframe_non_scalar_and_regression_cells_follow_the_table_rules():
    frame = pd.DataFrame({"text": ["a", "b"], "label": [[1], [2]]})
    with pytest.raises(DataError, match=r"DataFrame \(2 rows\): column 'label' holds a list value in data row 1"):
        load_data(frame)
    frame = pd.DataFrame({"text": ["a", "b"], "label": [1.0, np.inf]})
    with pytest.raises(DataError, match="holds inf in data row 2"):
        load_data(frame, task="regression")


def test_dataframe_image_column_of_paths_or_arrays(tmp_path, make_image):
    paths = [str(make_image(tmp_path / f"{i}.png", value=i * 50)) for i in range(4)]
    data = load_data(pd.DataFrame({"image": paths, "label": ["a", "b"] * 2}))["all"]
    assert data.modality == "image" and data.inputs == paths
    arrays = [np.full((6, 5), i * 40, dtype=np.uint8) for i in range(4)]
    data = load_data(pd.DataFrame({"image": arrays, "label": ["a", "b"] * 2}))["all"]
    assert data.inputs[1].shape == (6, 5) and data.inputs[1][0, 0] == 40


def test_empty_dataframe_is_refused():
    with pytest.raises(DataError, match=r"DataFrame \(0 rows\) has no rows"):
        load_data(pd.DataFrame({"text": [], "label": []}))


# Lists

def test_list_of_texts_with_labels_trains_and_splits():
    texts = [f"sentence {i}" for i in range(20)]
    parts = load_data(texts, modality="text", labels=["neg", "pos"] * 10)
    splits = make_splits(parts, val_fraction=0.2, test_fraction=0.2)
    assert splits["train"].modality == "text" and sum(len(s) for s in splits.values()) == 20


def test_list_of_paths_for_an_image_model(tmp_path, make_image):
    paths = [make_image(tmp_path / f"{i}.png") for i in range(3)]
    data = load_data(paths, modality="image", labels=[1, 2.0, "1"])["all"]
    assert data.inputs == [str(p) for p in paths] and data.classes == ["1", "2"]
    assert data.targets.tolist() == [0, 1, 0]
    # Path objects can only be files, so they need no modality; strings do (see below).
    assert load_data(paths, labels=["a", "b", "a"])["all"].modality == "image"


def test_list_of_paths_skips_bad_files_with_their_labels(tmp_path, make_image):
    paths = [str(make_image(tmp_path / "a.png")), str(tmp_path / "gone.png"), str(make_image(tmp_path / "c.png"))]
    with pytest.raises(DataError, match=r"gone\.png \(file not found\)"):
        load_data(paths, modality="image", labels=["x", "y", "z"], min_classes=1)
    data = load_data(paths, modality="image", labels=["x", "y", "z"], skip_bad_files=True)["all"]
    assert data.classes == ["x", "z"] and len(data) == 2


def test_list_of_pil_images_and_arrays_become_uint8_arrays():
    images = [Image.new("RGB", (5, 4), (10, 20, 30)), Image.new("L", (5, 4), 7)]
    data = as_inputs(images, "image")
    assert [a.shape for a in data.inputs] == [(4, 5, 3), (4, 5)]
    arrays = [np.zeros((4, 5), np.uint8), np.ones((4, 5, 3), np.float32), np.full((4, 5, 1), 0.5),
              np.zeros((4, 5, 4), np.int64)]
    data = as_inputs(arrays, "image")
    assert all(a.dtype == np.uint8 for a in data.inputs)
    assert [a.shape for a in data.inputs] == [(4, 5), (4, 5, 3), (4, 5), (4, 5, 4)]
    assert data.inputs[1].max() == 255 and data.inputs[2][0, 0] == 128


def test_array_inputs_feed_a_loader():
    arrays = [np.random.default_rng(i).random((9, 7, 3)) for i in range(3)]
    loader = make_loader(as_inputs(arrays, "image"), spec=DataSpec("image"), image_size=8, batch_size=3)
    images, _, index = next(iter(loader))
    assert images.shape == (3, 3, 8, 8) and index.tolist() == [0, 1, 2]


def test_list_of_strings_for_a_text_model_are_texts(tmp_path, make_image):
    path = str(make_image(tmp_path / "a.png"))
    assert as_inputs([path, "plain words"], "text").inputs == [path, "plain words"]


@pytest.mark.parametrize("array, message", [
    (np.full((4, 4), 2.0), r"float image array 0 holds values outside \[0, 1\] \(from 2 to 2"),
    (np.full((4, 4), np.nan), r"non-finite"),
    (np.zeros((3, 8, 8), np.uint8), r"shape \(3, 8, 8\).*channel-first: use array.transpose\(1, 2, 0\)"),
    (np.full((4, 4), 300, np.int32), r"integer image array 0 holds values 300..300"),
    (np.zeros((4, 4), bool), r"dtype bool"),
    (np.zeros((2, 4, 4, 3), np.uint8), r"shape \(2, 4, 4, 3\)"),
])
def test_unusable_arrays_are_refused(array, message):
    with pytest.raises(DataError, match=message):
        as_inputs([array], "image")


@pytest.mark.parametrize("obj, modality, message", [
    ([], "text", r"Got an empty list; give at least one input"),
    ({"text": ["a"]}, "text", r"Got a dict; give a pandas DataFrame \(pd.DataFrame\(your_dict\)\)"),
    ("a great movie", "text", r"Got a bare string 'a great movie' where a list was expected; wrap it in a list"),
    (np.zeros((2, 4, 4), np.uint8), "image", r"array of shape \(2, 4, 4\) where a list was expected.*list\(batch\)"),
    (Image.new("RGB", (2, 2)), "image", r"one PIL image where a list was expected; wrap it in a list"),
    ([np.zeros((4, 4), np.uint8)], "text", r"holds images, but the model reads texts"),
    (["a review", "another"], "image", r"none of the strings is an existing file .*strings means image file paths"),
    ([1, 2, 3], "text", r"item 0 is a int"),
    (42, "text", r"Cannot read a int as data; give a path"),
])
def test_unreadable_objects_are_refused_in_one_line(obj, modality, message):
    with pytest.raises(DataError, match=message) as info:
        as_inputs(obj, modality)
    assert "\n" not in str(info.value)


def test_mixed_list_is_refused(tmp_path, make_image):
    path = str(make_image(tmp_path / "a.png"))
    with pytest.raises(DataError, match=r"mixes images \(item 1\) with file paths or texts \(item 0\)"):
        as_inputs([path, np.zeros((4, 4), np.uint8)], "image")
    with pytest.raises(DataError, match=r"mixes images"):
        as_inputs([Image.new("L", (2, 2)), "x.png"], "image")


def test_list_of_strings_without_a_modality_is_not_guessed():
    with pytest.raises(ConfigError, match="a list of strings means image file paths for an image model and texts "
                                          "for a text model; pass modality="):
        load_data(["a", "b"], labels=["x", "y"])


def test_list_labels_are_checked():
    with pytest.raises(DataError, match="carries no labels; pass labels="):
        load_data(["a", "b"], modality="text")
    with pytest.raises(DataError, match="3 labels for 2 inputs"):
        load_data(["a", "b"], modality="text", labels=["x", "y", "x"])
    with pytest.raises(DataError, match="labels 'Pos' and 'pos' in column 'labels' differ only by case"):
        load_data(["a", "b", "c"], modality="text", labels=["Pos", "pos", "neg"])
    with pytest.raises(DataError, match="label 1 is missing"):
        load_data(["a", "b"], modality="text", labels=["x", None])
    with pytest.raises(ConfigError, match="labels= is for a list of inputs"):
        load_data("demo:digits", labels=[1])


# Paths and sources through as_inputs

def test_as_inputs_reads_a_table_without_its_labels(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('text,label\nhello,"[1, 2]"\nworld,\n', encoding="utf-8")
    data = as_inputs(str(path), "text")
    assert data.inputs == ["hello", "world"] and data.targets is None


def test_as_inputs_refuses_the_other_modality(tmp_path, image_folder):
    with pytest.raises(DataError, match="is an image folder, but the model reads texts"):
        as_inputs(str(image_folder), "text")
    with pytest.raises(DataError, match="demo:rotten-tomatoes is text data, but the model reads images"):
        as_inputs("demo:rotten-tomatoes", "image")
    labeled = LabeledData(["a"], None, "text", "classification", None, "mine")
    with pytest.raises(DataError, match="mine is text data, but the model reads images"):
        as_inputs(labeled, "image")
    assert as_inputs(labeled, "text") is labeled


def test_as_inputs_asks_for_one_part_of_a_split_folder(split_folder):
    with pytest.raises(DataError, match=r"holds the parts train, test; give one of them, e\.g\. .*split/test"):
        as_inputs(str(split_folder), "image")
    assert len(as_inputs(str(Path(split_folder) / "test"), "image")) == 3


def test_bare_image_path_is_refused_with_wrap_hint(tmp_path, make_image):
    path = make_image(tmp_path / "one.png")
    with pytest.raises(DataError, match="wrap it in a list"):
        as_inputs(str(path), "image")
    assert len(as_inputs([path], "image")) == 1
