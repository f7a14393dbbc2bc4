import numpy as np
import pytest

from transferkit.data import LabeledData, align_classes, load_data, make_splits
from transferkit.errors import ConfigError, DataError


def _data(counts, name="d", modality="text"):
    targets = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    inputs = [f"item{i}" for i in range(len(targets))]
    classes = [f"c{c}" for c in range(len(counts))]
    return LabeledData(inputs, targets, modality, "classification", classes, name)


def _regression(n):
    return LabeledData([f"x{i}" for i in range(n)], np.arange(n, dtype=np.float32), "text", "regression", None, "r")


def _ids(part):
    return sorted(part.inputs)


def test_splits_are_deterministic_and_disjoint():
    data = _data([40, 60])
    a = make_splits({"all": data}, seed=3)
    b = make_splits({"all": data}, seed=3)
    c = make_splits({"all": data}, seed=4)
    assert list(a) == ["train", "val", "test"]
    assert all(_ids(a[k]) == _ids(b[k]) for k in a)
    assert _ids(a["test"]) != _ids(c["test"])
    all_ids = _ids(a["train"]) + _ids(a["val"]) + _ids(a["test"])
    assert sorted(all_ids) == sorted(data.inputs)


def test_splits_are_stratified():
    splits = make_splits({"all": _data([40, 60])}, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert splits["val"].class_counts() == {"c0": 8, "c1": 12}
    assert splits["test"].class_counts() == {"c0": 4, "c1": 6}
    assert splits["train"].class_counts() == {"c0": 28, "c1": 42}


def test_tiny_classes_keep_one_training_sample():
    splits = make_splits({"all": _data([1, 2, 30])}, val_fraction=0.3, test_fraction=0.3)
    train = splits["train"].class_counts()
    assert train["c0"] == 1 and train["c1"] >= 1
    assert len(splits["val"]) + len(splits["test"]) == round(0.3 * 33) * 2


def test_zero_fractions_give_empty_parts():
    splits = make_splits({"all": _data([5, 5])}, val_fraction=0.0, test_fraction=0.0)
    assert len(splits["train"]) == 10 and len(splits["val"]) == 0 and len(splits["test"]) == 0


def test_train_per_class_exact_counts_and_nested():
    data = _data([50, 30, 20])
    five = make_splits({"all": data}, train_per_class=5, seed=1)
    ten = make_splits({"all": data}, train_per_class=10, seed=1)
    full = make_splits({"all": data}, seed=1)
    assert five["train"].class_counts() == {"c0": 5, "c1": 5, "c2": 5}
    assert ten["train"].class_counts() == {"c0": 10, "c1": 10, "c2": 10}
    assert set(five["train"].inputs) <= set(ten["train"].inputs) <= set(full["train"].inputs)
    assert _ids(five["test"]) == _ids(full["test"]) and _ids(five["val"]) == _ids(full["val"])
    again = make_splits({"all": data}, train_per_class=5, seed=1)
    assert _ids(again["train"]) == _ids(five["train"])


def test_train_per_class_too_large_names_the_class():
    data = _data([50, 10])
    with pytest.raises(DataError, match="train_per_class=20 but class 'c1' has only 7 training samples"):
        make_splits({"all": data}, train_per_class=20)


def test_train_per_class_refused_for_regression():
    with pytest.raises(ConfigError, match="classification only"):
        make_splits({"all": _regression(20)}, train_per_class=2)


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_train_per_class_must_be_positive_integer(n):
    with pytest.raises(ConfigError, match="positive integer"):
        make_splits({"all": _data([10, 10])}, train_per_class=n)


@pytest.mark.parametrize("val, test, match", [
    (-0.1, 0.1, r"val_fraction must lie in \[0, 1\), got -0.1"),
    (0.2, 1.0, r"test_fraction must lie in \[0, 1\), got 1.0"),
    (0.5, 0.5, "must stay below 1"),
])
def test_bad_fractions(val, test, match):
    with pytest.raises(ConfigError, match=match):
        make_splits({"all": _data([10, 10])}, val_fraction=val, test_fraction=test)


def test_regression_shuffle_split():
    splits = make_splits({"all": _regression(20)}, val_fraction=0.25, test_fraction=0.25, seed=2)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [10, 5, 5]
    values = np.concatenate([splits[k].targets for k in splits])
    assert sorted(values.tolist()) == list(range(20))
    assert splits["test"].targets.tolist() != list(range(15, 20))


def test_predefined_parts_are_respected(split_folder):
    parts = load_data(str(split_folder))
    splits = make_splits(parts, val_fraction=0.25, test_fraction=0.4)
    assert _ids(splits["test"]) == _ids(parts["test"])
    assert len(splits["val"]) == round(0.25 * 9)
    assert len(splits["train"]) + len(splits["val"]) == 9
    assert set(splits["val"].inputs) <= set(parts["train"].inputs)


def test_predefined_val_and_test_leave_train_whole():
    parts = {"train": _data([6, 6]), "val": _data([2, 2], "v"), "test": _data([3, 1], "t")}
    splits = make_splits(parts)
    assert len(splits["train"]) == 12
    assert splits["val"].name == "v" and splits["test"].name == "t"


def test_test_data_replaces_test_and_is_aligned():
    train = _data([10, 10, 10])
    holdout = LabeledData(["h0", "h1", "h2"], [0, 1, 1], "text", "classification", ["c1", "c2"], "holdout")
    splits = make_splits({"all": train}, test_data=holdout, val_fraction=0.2)
    assert splits["test"].name == "holdout"
    assert splits["test"].classes == ["c0", "c1", "c2"]
    assert splits["test"].targets.tolist() == [1, 2, 2]
    assert len(splits["train"]) + len(splits["val"]) == 30


def test_test_data_with_modality_mismatch():
    holdout = _data([2, 2], "images", modality="image")
    with pytest.raises(DataError, match="images is image classification data but d is text"):
        make_splits({"all": _data([5, 5])}, test_data=holdout)


def test_class_missing_from_train_is_named(tmp_path, make_class_folder):
    make_class_folder(tmp_path / "d" / "train", {"cat": 2, "dog": 2})
    make_class_folder(tmp_path / "d" / "test", {"cat": 1, "eel": 1})
    parts = load_data(str(tmp_path / "d"))
    with pytest.raises(DataError, match="Classes without any training sample in .*: 'eel'"):
        make_splits(parts)


def test_parts_without_train():
    with pytest.raises(ConfigError, match="exactly one of 'all' or 'train'"):
        make_splits({"test": _data([2, 2])})


def test_unlabeled_pool_is_refused():
    data = LabeledData(["a", "b"], None, "text", "classification", None, "u")
    with pytest.raises(DataError, match="u is unlabeled"):
        make_splits({"all": data})


def test_align_classes_reindexes():
    data = LabeledData(["a", "b", "c"], [0, 1, 0], "text", "classification", ["dog", "eel"], "t")
    aligned = align_classes(data, ["cat", "dog", "eel"])
    assert aligned.classes == ["cat", "dog", "eel"]
    assert aligned.targets.tolist() == [1, 2, 1]


def test_align_classes_unknown_label_lists_known():
    data = LabeledData(["a", "b", "c"], [0, 1, 1], "text", "classification", ["cat", "cow"], "holdout")
    with pytest.raises(DataError, match=r"'cow' \(2 samples\); known classes: 'cat', 'dog'"):
        align_classes(data, ["cat", "dog"])


def test_align_classes_ignores_unused_extra_class():
    data = LabeledData(["a"], [0], "text", "classification", ["cat", "cow"], "holdout")
    assert align_classes(data, ["cat", "dog"]).targets.tolist() == [0]
