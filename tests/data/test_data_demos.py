import numpy as np
import pytest

from transferkit.data import DEMOS, LabeledData, list_demos, load_data, register_demo
from transferkit.errors import ConfigError, UnknownNameError

DIGITS = [str(d) for d in range(10)]


def test_demo_names():
    assert {"demo:mnist", "demo:digits", "demo:rotten-tomatoes"} <= set(list_demos())


def test_mnist():
    data = load_data("demo:mnist")["all"]
    assert (len(data), data.modality, data.classes, data.name) == (5000, "image", DIGITS, "demo:mnist")
    assert data.class_counts() == {d: 500 for d in DIGITS}
    first = data.inputs[0]
    assert first.shape == (28, 28) and first.dtype == np.uint8 and first.max() > 200


def test_digits_are_scaled_to_uint8():
    data = load_data("demo:digits")["all"]
    assert len(data) == 1797 and data.classes == DIGITS
    assert sum(data.class_counts().values()) == 1797
    stacked = np.stack(data.inputs)
    assert stacked.shape == (1797, 8, 8) and stacked.dtype == np.uint8
    assert stacked.max() == 255 and stacked.min() == 0


def test_rotten_tomatoes_without_plots():
    data = load_data("demo:rotten-tomatoes")["all"]
    assert (data.modality, data.classes) == ("text", ["fresh", "rotten"])
    assert data.class_counts() == {"fresh": 7403, "rotten": 5405}
    assert all(isinstance(t, str) and t for t in data.inputs[:100])


def test_demo_is_cached_but_each_call_independent():
    a = load_data("demo:mnist")["all"]
    b = load_data("demo:mnist")["all"]
    assert a.fingerprint() == b.fingerprint()
    original = int(a.targets[0])
    a.targets[0] = (original + 1) % 10
    assert b.targets[0] == original
    assert load_data("demo:mnist")["all"].targets[0] == original
    with pytest.raises(ValueError):
        a.inputs[0][0, 0] = 1  # shared cached pixels are read-only


def test_unknown_demo_suggests_and_lists():
    with pytest.raises(UnknownNameError, match="Unknown demo data set 'demo:mnst'. Did you mean 'demo:mnist'.*"
                                               "Available: .*demo:rotten-tomatoes"):
        load_data("demo:mnst")


def test_demo_with_regression_task_is_refused():
    with pytest.raises(ConfigError, match="demo:digits is a classification data set"):
        load_data("demo:digits", task="regression")


def test_register_demo_adds_a_source():
    @register_demo("tiny-test-set")
    def tiny():
        return LabeledData(["a", "b"], [0, 1], "text", "classification", ["x", "y"], "demo:tiny-test-set")

    try:
        assert load_data("demo:tiny-test-set")["all"].inputs == ["a", "b"]
    finally:
        DEMOS._entries.pop("demo:tiny-test-set")
