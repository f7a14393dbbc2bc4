"""Held-out items identical to training items, and splits that come out empty."""

import json
import logging
import shutil

import numpy as np
import pytest

from transferkit.data import LabeledData, find_duplicates, load_data, make_splits
from transferkit.errors import DataError


def texts(items, labels=None, name="texts"):
    labels = labels if labels is not None else [i % 2 for i in range(len(items))]
    return LabeledData(list(items), np.asarray(labels), "text", "classification", ["a", "b"], name)


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# Leakage

def test_test_data_copied_from_training_is_counted_with_examples(tmp_path, make_class_folder, caplog):
    train = make_class_folder(tmp_path / "train", {"cat": 3, "dog": 3})
    for name in ("cat", "dog"):
        (tmp_path / "test" / name).mkdir(parents=True)
    # Content, not names: a training file copied under a new name, and one genuinely new image.
    shutil.copy(train / "cat" / "img1.png", tmp_path / "test" / "cat" / "renamed.png")
    from PIL import Image
    Image.fromarray(np.full((10, 12, 3), 7, dtype=np.uint8)).save(tmp_path / "test" / "dog" / "new.png")
    test = load_data(str(tmp_path / "test"))["all"]
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        splits = make_splits(load_data(str(train)), test_data=test, val_fraction=0.0)
    report = splits.leakage["test"]
    assert (report.count, report.total) == (1, 2)
    assert report.examples[0][0].endswith("renamed.png") and report.examples[0][1].endswith("img1.png")
    message = next(m for m in warnings_of(caplog) if "identical to training items" in m)
    assert message.startswith("1 of 2 test items are identical to training items") and "renamed.png" in message
    assert message in splits.warnings


def test_texts_match_after_case_and_whitespace_normalisation():
    train = texts(["A fine film.", "Dull and long", "x", "y"])
    other = texts(["a  FINE film. ", "dull and long", "brand new"])
    report = find_duplicates(train, other, split="val")
    assert (report.count, report.total) == (2, 3)
    assert report.examples == (("'a  FINE film. '", "'A fine film.'"), ("'dull and long'", "'Dull and long'"))


def test_arrays_match_by_pixels_not_identity():
    rng = np.random.default_rng(0)
    train_images = [rng.integers(0, 256, (4, 4), dtype=np.uint8) for _ in range(4)]
    train = LabeledData(train_images, np.array([0, 1, 0, 1]), "image", "classification", ["a", "b"], "t")
    copy = train_images[2].copy()
    other = LabeledData([copy, copy.T.copy(), copy.astype(np.uint16)], None, "image", "classification", None, "o")
    report = find_duplicates(train, other)
    assert report.count == 1 and report.examples == (("item 0", "item 2"),)


def test_clean_splits_report_zero_and_warn_nothing(caplog):
    data = texts([f"unique sentence {i}" for i in range(40)])
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        splits = make_splits({"all": data}, val_fraction=0.25, test_fraction=0.25)
    assert {k: r.count for k, r in splits.leakage.items()} == {"val": 0, "test": 0}
    assert splits.warnings == [] and warnings_of(caplog) == []
    assert json.loads(json.dumps(splits.leakage_dict()))["test"]["total"] == len(splits["test"])


def test_duplicates_inside_one_pool_show_up_in_the_val_report():
    data = texts(["same text"] * 10 + [f"other {i}" for i in range(10)], [0] * 10 + [1] * 10)
    splits = make_splits({"all": data}, val_fraction=0.3, test_fraction=0.0, seed=1)
    report = splits.leakage["val"]
    carved_same = sum(t == "same text" for t in splits["val"].inputs)
    assert carved_same > 0 and report.count == carved_same
    assert splits.leakage_dict()["val"]["examples"][0] == {"item": "'same text'", "train_item": "'same text'"}


def test_leakage_check_can_be_turned_off():
    data = texts(["dup"] * 10 + [f"u{i}" for i in range(10)], [0] * 10 + [1] * 10)
    assert make_splits({"all": data}, leakage=False).leakage == {}


# Empty and shrunken splits

def test_empty_test_split_that_was_asked_for_is_an_error():
    data = LabeledData([f"t{i}" for i in range(3)], np.array([0.0, 1.0, 2.0]), "text", "regression", None, "tiny")
    with pytest.raises(DataError, match=r"The test split is empty: test_fraction 0.1 of 3 samples rounds to 0 "
                                        r"items; raise --test-fraction, give --test-data, or set --test-fraction 0"):
        make_splits({"all": data}, val_fraction=0.0, test_fraction=0.1)


def test_single_sample_classes_cannot_give_a_test_split():
    data = LabeledData([f"t{i}" for i in range(10)], np.arange(10), "text", "classification",
                       [str(i) for i in range(10)], "singletons")
    with pytest.raises(DataError, match="The test split is empty: every class has a single sample, which stays in "
                                        "training"):
        make_splits({"all": data}, val_fraction=0.0, test_fraction=0.2)


def test_empty_val_split_is_a_warning_that_says_why(caplog):
    data = LabeledData([f"t{i}" for i in range(10)], np.arange(10), "text", "classification",
                       [str(i) for i in range(10)], "singletons")
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        splits = make_splits({"all": data}, val_fraction=0.2, test_fraction=0.0)
    assert len(splits["val"]) == 0 and len(splits["train"]) == 10
    assert warnings_of(caplog) == splits.warnings
    assert splits.warnings[0].startswith("The val split is empty: every class has a single sample")
    assert "training runs without validation" in splits.warnings[0]


def test_zero_fractions_asked_for_no_split_and_warn_nothing(caplog):
    data = texts([f"s{i}" for i in range(8)])
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        splits = make_splits({"all": data}, val_fraction=0.0, test_fraction=0.0)
    assert (len(splits["val"]), len(splits["test"])) == (0, 0) and warnings_of(caplog) == []


def test_shrunken_split_is_a_warning():
    # 3 classes: two with 10 samples, one with a single sample that must stay in training.
    labels = [0] * 10 + [1] * 10 + [2]
    data = LabeledData([f"s{i}" for i in range(21)], np.array(labels), "text", "classification",
                       ["a", "b", "c"], "skewed")
    splits = make_splits({"all": data}, val_fraction=0.9, test_fraction=0.05)
    assert len(splits["val"]) < round(0.9 * 21)
    expected = f"The val split has {len(splits['val'])} items where val_fraction 0.9 of 21 asks for 19: every class"
    assert any(w.startswith(expected) for w in splits.warnings)
