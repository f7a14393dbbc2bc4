import os

import numpy as np
import pytest

from transferkit.data import LabeledData, open_image
from transferkit.errors import ConfigError, DataError


def _text_data(texts=("a", "b", "c"), targets=(0, 1, 0)):
    return LabeledData(list(texts), np.array(targets), "text", "classification", ["neg", "pos"], "t")


def test_targets_get_task_dtype():
    assert _text_data().targets.dtype == np.int64
    reg = LabeledData(["a", "b"], [1, 2.5], "text", "regression", None, "r")
    assert reg.targets.dtype == np.float32


def test_subset_keeps_classes_and_order():
    data = _text_data(texts=("a", "b", "c", "d"), targets=(0, 1, 0, 1))
    part = data.subset([3, 0])
    assert part.inputs == ["d", "a"]
    assert part.targets.tolist() == [1, 0]
    assert part.classes == ["neg", "pos"]


def test_class_counts_include_empty_classes():
    data = LabeledData(["a", "b"], [0, 0], "text", "classification", ["x", "y", "z"], "t")
    assert data.class_counts() == {"x": 2, "y": 0, "z": 0}


def test_target_count_mismatch_is_refused():
    with pytest.raises(DataError, match="3 inputs but targets of shape"):
        _text_data(targets=(0, 1))


def test_target_index_out_of_range_is_refused():
    with pytest.raises(DataError, match=r"class indices must lie in \[0, 2\)"):
        _text_data(targets=(0, 2, 1))


def test_unknown_task_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'regression'"):
        LabeledData(["a"], None, "text", "regresion", None, "t")


def test_fingerprint_text_stable_and_content_sensitive():
    base = _text_data().fingerprint()
    assert _text_data().fingerprint() == base
    assert _text_data(texts=("a", "b", "C")).fingerprint() != base
    assert _text_data(targets=(1, 1, 0)).fingerprint() != base
    # Concatenation must not collide: ("ab", "c") vs ("a", "bc").
    assert _text_data(texts=("ab", "", "c")).fingerprint() != _text_data(texts=("a", "b", "c")).fingerprint()


def test_fingerprint_arrays_change_with_pixels():
    arrays = [np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8)]
    data = LabeledData(arrays, [0, 1], "image", "classification", ["a", "b"], "arr")
    before = data.fingerprint()
    changed = [a.copy() for a in arrays]
    changed[1][0, 0] = 7
    assert LabeledData(changed, [0, 1], "image", "classification", ["a", "b"], "arr").fingerprint() != before
    assert data.fingerprint() == before


def test_fingerprint_paths_follow_file_edits(tmp_path, make_image):
    path = make_image(tmp_path / "a.png")
    data = LabeledData([str(path)], None, "image", "classification", None, "p")
    before = data.fingerprint()
    assert data.fingerprint() == before
    make_image(path, value=3, size=(20, 20))
    os.utime(path, ns=(1, 1))
    assert data.fingerprint() != before


def test_fingerprint_unlabeled_differs_from_labeled():
    unlabeled = LabeledData(["a", "b", "c"], None, "text", "classification", ["neg", "pos"], "t")
    assert unlabeled.fingerprint() != _text_data().fingerprint()


def test_fingerprint_missing_file_names_it(tmp_path):
    data = LabeledData([str(tmp_path / "gone.png")], None, "image", "classification", None, "p")
    with pytest.raises(DataError, match="gone.png"):
        data.fingerprint()


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4)])
def test_open_image_arrays_become_rgb(shape):
    image = open_image(np.full(shape, 200, dtype=np.uint8))
    assert image.mode == "RGB"
    assert image.size == (7, 5)
    assert np.asarray(image)[0, 0].tolist() == [200, 200, 200]


def test_open_image_grayscale_file_becomes_rgb(tmp_path, make_image):
    path = make_image(tmp_path / "g.png", value=90, mode="L")
    image = open_image(str(path))
    assert image.mode == "RGB"
    assert np.asarray(image).shape == (10, 12, 3)
    assert (np.asarray(image) == 90).all()


def test_open_image_corrupt_file_names_it(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=r"Cannot read image file .*broken\.jpg"):
        open_image(str(bad))


def test_open_image_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"Image file not found: .*nope\.png"):
        open_image(tmp_path / "nope.png")


def test_open_image_rejects_float_arrays():
    with pytest.raises(DataError, match="must be uint8"):
        open_image(np.zeros((4, 4), dtype=np.float32))


def test_open_image_rejects_bad_shapes():
    with pytest.raises(DataError, match=r"got \(4, 4, 2\)"):
        open_image(np.zeros((4, 4, 2), dtype=np.uint8))
