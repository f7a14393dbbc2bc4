"""In-memory data in a run's config: a DataFrame or a list stands in config.yaml as a description.

A run's config is saved as YAML, where a DataFrame or a list of images cannot go. `remember`
keeps the object for this Python process under a name that describes it and fingerprints its
content, e.g. `<DataFrame: 60 rows, fingerprint 3f2a9c1b0d4e>`; `load_data` reads that name
back from the object. Another process (a `--resume`, `transferkit evaluate` of the saved
config) does not hold the object, and refuses the name in one line instead of guessing.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd
from PIL import Image

from transferkit.data.dataset import LabeledData
from transferkit.errors import DataError

_HELD: dict[str, tuple[object, str | None]] = {}


def is_in_memory(spec) -> bool:
    """Whether `spec` is a Python data object rather than a path or a name."""
    return spec is not None and not isinstance(spec, str | os.PathLike)


def is_memory_name(spec) -> bool:
    return isinstance(spec, str) and spec.startswith("<") and spec.endswith(">") and "fingerprint" in spec


def remember(obj, modality: str | None = None) -> str:
    """The name `obj` goes by in a config; `load_data` reads it back in this process.

    Args:
        obj: a DataFrame, a list / tuple / Series of inputs, or a LabeledData.
        modality: the modality of the model that reads it (a list of strings needs it).
    """
    name = f"<{_kind(obj)}, fingerprint {fingerprint(obj)}>"
    _HELD[name] = (obj, modality)
    return name


def recall(name: str) -> tuple[object, str | None]:
    """(object, modality) remembered under `name`.

    Raises:
        DataError: `name` was remembered in another Python process (or never).
    """
    if name not in _HELD:
        raise DataError(f"{name} was a Python object given to fit in another session; it is not saved with the "
                        "run, so it cannot be reloaded (no --resume): pass the object again, or save it as a "
                        "table file and give its path.")
    return _HELD[name]


def _kind(obj) -> str:
    if isinstance(obj, pd.DataFrame):
        return f"DataFrame: {len(obj)} rows"
    if isinstance(obj, LabeledData):
        return f"LabeledData {obj.name}: {len(obj)} items"
    try:
        return f"{type(obj).__name__}: {len(obj)} items"
    except TypeError:
        return type(obj).__name__


def fingerprint(obj) -> str:
    """12 hex digits of a sha1 over the object's content (cells, pixels, texts), not its identity."""
    digest = hashlib.sha1()
    _feed(digest, obj)
    return digest.hexdigest()[:12]


def _feed(digest, value) -> None:
    if isinstance(value, pd.DataFrame):
        digest.update(f"frame|{list(map(str, value.columns))}|".encode())
        for column in value.columns:
            for cell in value[column].tolist():
                _feed(digest, cell)
    elif isinstance(value, LabeledData):
        _feed(digest, list(value.inputs))
        _feed(digest, None if value.targets is None else np.asarray(value.targets))
    elif isinstance(value, list | tuple | pd.Series):
        digest.update(f"list{len(value)}|".encode())
        for item in list(value):
            _feed(digest, item)
    elif isinstance(value, np.ndarray):
        digest.update(f"array|{value.dtype}|{value.shape}|".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, Image.Image):
        digest.update(f"pil|{value.mode}|{value.size}|".encode())
        digest.update(value.tobytes())
    else:
        digest.update(f"{type(value).__name__}|{value!r}|".encode("utf-8", "surrogatepass"))
