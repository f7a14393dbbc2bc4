"""RunConfig: every choice of a run, frozen, validated when built, saved fully resolved."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from transferkit.errors import ConfigError, suggest

TASKS = ("classification", "regression")
PRECISIONS = ("32", "bf16")
ACCELERATORS = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class RunConfig:
    """What to fit, on what, and how.

    `epochs`, `lr` and `head` left as None take the strategy's defaults; `strategy_options`
    holds the strategy's own settings (e.g. `freeze`, `layer_decay`, `alpha`) and is checked
    against that strategy's config class. `tracker` names an experiment tracker (csv, tensorboard,
    mlflow) logged to besides the run folder's CSV log; `tracking_uri` and `experiment` say where
    (MLflow: a store URI, default a SQLite file next to the run folder). `feature_cache` is the
    folder of cached frozen-backbone features (default: $TRANSFERKIT_CACHE/features).
    `target_data` is unlabeled data of the domain to adapt to (any source `data` takes; its labels
    are ignored): the domain-adaptation strategies train on it, and every run measures the domain
    gap to it.
    `accelerator`, `devices` and `num_nodes` say where Lightning trains: more than one device or
    node trains with DDP (`batch_size` is per process, so the global batch is devices x nodes x it).
    """

    data: str
    model: str
    strategy: str = "feature-extraction"
    task: str = "classification"
    out: str | None = None
    weights: str | None = None
    test_data: str | None = None
    target_data: str | None = None
    text_column: str = "text"
    image_column: str = "image"
    label_column: str = "label"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    train_per_class: int | None = None
    skip_bad_files: bool = False
    image_size: int | None = None
    max_length: int | None = None
    augment: str = "none"
    epochs: int | None = None
    batch_size: int = 32
    lr: float | None = None
    weight_decay: float = 0.01
    seed: int = 0
    patience: int | None = 5
    precision: str = "32"
    num_workers: int = 0
    head: str | None = None
    strategy_options: dict[str, Any] = field(default_factory=dict)
    tracker: str = "csv"
    tracking_uri: str | None = None
    experiment: str | None = None
    feature_cache: str | None = None
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1

    def __post_init__(self):
        if self.task not in TASKS:
            raise ConfigError(f"Unknown task {self.task!r}. Choose one of: {', '.join(TASKS)}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"Unknown precision {self.precision!r}. Choose one of: {', '.join(PRECISIONS)}.")
        if self.accelerator not in ACCELERATORS:
            raise ConfigError(f"Unknown accelerator {self.accelerator!r}. Choose one of: {', '.join(ACCELERATORS)}.")
        positive = {"batch_size": self.batch_size, "epochs": self.epochs, "image_size": self.image_size,
                    "max_length": self.max_length, "train_per_class": self.train_per_class,
                    "devices": self.devices, "num_nodes": self.num_nodes}
        for name, value in positive.items():
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}.")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr!r}.")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1), got {value!r}.")

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            raise ConfigError(f"Unknown config key {unknown[0]!r}.{suggest(unknown[0], known)}")
        missing = [k for k in ("data", "model") if values.get(k) in (None, "")]
        if missing:
            raise ConfigError(f"The config needs {' and '.join(missing)} (e.g. --{missing[0]} ...).")
        return cls(**values)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}.")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of option: value.")
    return {k.replace("-", "_"): v for k, v in values.items()}


def save_yaml(values: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(values, sort_keys=False))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
