"""RunConfig: every choice of a run, frozen, validated when built, saved fully resolved.

Each option is declared once, as a dataclass field whose metadata holds its help text and its
range or choices (`option(...)`); `RunConfig.options()` reads them back as `OptionSpec`s, so the
command line, the YAML loader and the Python API check and coerce a value the same way.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any


import yaml

from transferkit.errors import ConfigError, suggest
from transferkit.files import atomic_write_text, save_yaml  # noqa: F401  (re-exported)

TASKS = ("classification", "regression")
PRECISIONS = ("32", "bf16")
ACCELERATORS = ("auto", "cpu", "gpu")
AUGMENTS = ("none", "light", "standard")
#: Lightning's seed_everything takes seeds that fit an unsigned 32-bit integer.
MAX_SEED = 2**32 - 1
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_YAML_BOOL_HINT = " (YAML reads unquoted yes/no/on/off as true/false; quote the value)"


def tracker_names() -> tuple[str, ...]:
    """The registered experiment trackers (`csv`, `tensorboard`, `mlflow` and any a user registered)."""
    # Read when a config is checked, not when this module loads: the tracker adapters that fill the
    # registry write their files through this module, and trackers registered later count too.
    from transferkit.tracking import TRACKERS

    return tuple(TRACKERS.names())


def option(default: Any = dataclasses.MISSING, *, help: str, min: float | None = None, max: float | None = None,
           above: float | None = None, below: float | None = None,
           choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
           default_factory: Any = dataclasses.MISSING):
    """A RunConfig field with its help text and the values it takes.

    Args:
        default: the default value (omit for a required option).
        help: one line for `--help` and the docs.
        min: smallest value allowed (inclusive).
        max: largest value allowed (inclusive).
        above: a value the option must stay strictly above (e.g. 0 for a learning rate).
        below: a value the option must stay strictly below (e.g. 1 for a fraction).
        choices: the names allowed, or a callable returning them (a registry read when checked).
        default_factory: a callable making the default (for mutable defaults).
    """
    metadata = {"help": help, "min": min, "max": max, "above": above, "below": below, "choices": choices}
    return field(default=default, default_factory=default_factory,
                 metadata={k: v for k, v in metadata.items() if v is not None})


@dataclass(frozen=True)
class OptionSpec:
    """One RunConfig option as read from its field: type, default, help and allowed values."""

    name: str
    type: type
    optional: bool
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    choices_source: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        """How messages name the option: the flag, with the YAML/Python key when it reads differently."""
        return self.flag if "_" not in self.name else f"{self.flag} ({self.name})"

    @property
    def choices(self) -> tuple[str, ...] | None:
        source = self.choices_source
        return tuple(source()) if callable(source) else source

    def expects(self) -> str:
        """What the option takes, in words: 'an integer in [8, 4096]', 'a number > 0'."""
        if self.choices is not None:
            return "one of: " + ", ".join(self.choices)
        noun = {int: "an integer", float: "a finite number", bool: "true or false",
                dict: "a mapping of name: value"}.get(self.type, "a string")
        if self.type is int and self.min == 1 and self.max is None:
            return "a positive integer"
        return noun + self._bounds()

    def _bounds(self) -> str:
        low = f"[{_num(self.min)}" if self.min is not None else None if self.above is None else f"({_num(self.above)}"
        high = f"{_num(self.max)}]" if self.max is not None else None if self.below is None else f"{_num(self.below)})"
        if low and high:
            return f" in {low}, {high}"
        if low:
            return (" >= " if low[0] == "[" else " > ") + low[1:]
        if high:
            return (" <= " if high[-1] == "]" else " < ") + high[:-1]
        return ""

    def describe(self) -> str:
        """The help line with the values taken and the default, e.g. for an argparse help text."""
        notes = [] if self.type is str and self.choices is None else [self.expects()]
        if self.default not in (None, {}, dataclasses.MISSING):
            notes.append(f"default: {self.default}")
        return f"{self.help} ({'; '.join(notes)})" if notes else self.help

    def coerce(self, value: Any) -> Any:
        """`value` as this option's type, checked against its range or choices; ConfigError otherwise."""
        if value is None:
            if self.optional:
                return None
            if self.type is dict:
                return {}
            raise ConfigError(f"The config needs {self.name} (e.g. {self.flag} ...).")
        converted = _CONVERTERS[self.type](value)
        if converted is _INVALID:
            hint = _YAML_BOOL_HINT if isinstance(value, bool) else ""
            if self.choices is not None:
                raise ConfigError(f"Unknown {self.name.replace('_', ' ')} {value!r}{hint}. "
                                  f"Choose one of: {', '.join(self.choices)}.")
            raise ConfigError(f"{self.label} must be {self.expects()}, got {value!r}{hint}.")
        self._check_range(converted, value)
        return converted

    def _check_range(self, converted: Any, given: Any) -> None:
        choices = self.choices
        if choices is not None and converted not in choices:
            what = self.name.replace("_", " ")
            # All choices are listed, so only a near-certain typo gets a suggestion.
            close = suggest(str(converted), choices, cutoff=0.75)
            raise ConfigError(f"Unknown {what} {given!r}.{close} Choose one of: {', '.join(choices)}.")
        if self.type not in (int, float):
            return
        in_range = (math.isfinite(converted)
                    and (self.min is None or converted >= self.min) and (self.max is None or converted <= self.max)
                    and (self.above is None or converted > self.above)
                    and (self.below is None or converted < self.below))
        if not in_range:
            raise ConfigError(f"{self.label} must be {self.expects()}, got {given!r}.")


_INVALID = object()


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _to_int(value: Any) -> Any:
    # 3.0 (YAML, JSON, a computed value) means 3; 3.5 and True do not mean an integer.
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            value = _to_float(text)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    return _INVALID


def _to_float(value: Any) -> Any:
    # PyYAML reads `1e-3` (no dot) as a string, so numeric strings are numbers here.
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return _INVALID
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return _INVALID


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | numbers.Integral) else None
    return True if text in _TRUE else False if text in _FALSE else _INVALID


def _to_str(value: Any) -> Any:
    # YAML reads `precision: 32` as an integer; a bool is refused (`augment: no` reads as False).
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return str(value)
    return _INVALID


def _to_dict(value: Any) -> Any:
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    return _INVALID


_CONVERTERS: dict[type, Callable[[Any], Any]] = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str,
                                                 dict: _to_dict}


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

    Every value is coerced to its field's type and checked when the config is built (from flags,
    YAML or Python): a bad one raises ConfigError naming the option and what it takes.
    """

    data: str = option(help="image folder, .csv/.jsonl/.parquet table, or demo:mnist|digits|rotten-tomatoes")
    model: str = option(help="backbone name (see `transferkit models`), timm:<arch> or hf:<id-or-folder>")
    strategy: str = option("feature-extraction", help="transfer strategy (see `transferkit strategies`)")
    task: str = option("classification", help="what the labels are", choices=TASKS)
    out: str | None = option(None, help="run folder to create")
    weights: str | None = option(None, help="local weights file (timm) replacing the default source")
    test_data: str | None = option(None, help="separate labeled test set (same kinds as --data)")
    target_data: str | None = option(None, help="unlabeled data of the domain to adapt to (labels ignored): "
                                     "dann, coral and mmd train on it; every run reports the domain gap to it")
    text_column: str = option("text", help="table column holding the texts")
    image_column: str = option("image", help="table column holding the image paths")
    label_column: str = option("label", help="table column holding the labels")
    val_fraction: float = option(0.15, help="share of the data held out for validation", min=0, below=1)
    test_fraction: float = option(0.15, help="share held out for testing, unless --test-data is given",
                                  min=0, below=1)
    train_per_class: int | None = option(None, help="keep N training samples per class (scarce labels)", min=1)
    skip_bad_files: bool = option(False, help="skip unreadable images with a warning")
    image_size: int | None = option(None, help="input resolution; default: the backbone's pretrained size",
                                    min=8, max=4096)
    max_length: int | None = option(None, help="max text tokens; default: the backbone's", min=1, max=8192)
    augment: str = option("none", help="training-image augmentation", choices=AUGMENTS)
    epochs: int | None = option(None, help="training epochs; default: the strategy's", min=1)
    batch_size: int = option(32, help="samples per batch (per process under DDP)", min=1)
    lr: float | None = option(None, help="base (head) learning rate, which layer groups scale; default: the strategy's",
                              above=0)
    weight_decay: float = option(0.01, help="AdamW weight decay", min=0)
    seed: int = option(0, help="random seed of splits, initialisation and batch order", min=0, max=MAX_SEED)
    patience: int | None = option(5, help="early-stopping patience in epochs (0: off)", min=0)
    precision: str = option("32", help="training precision", choices=PRECISIONS)
    num_workers: int = option(0, help="data-loading worker processes", min=0)
    head: str | None = option(None, help="linear | mlp | logistic | ridge (scikit-learn heads: "
                              "feature-extraction only); default: the strategy's")
    strategy_options: dict[str, Any] = option(help="the strategy's own settings, checked by the strategy",
                                              default_factory=dict)
    tracker: str = option("csv", help="experiment tracker besides the CSV log", choices=tracker_names)
    tracking_uri: str | None = option(None, help="MLflow store URI; default: sqlite:///<output root>/mlflow.db")
    experiment: str | None = option(None, help="MLflow experiment name; default: transferkit (compare: its folder)")
    feature_cache: str | None = option(None, help="folder of cached frozen-backbone features")
    accelerator: str = option("auto", help="where to train", choices=ACCELERATORS)
    devices: int = option(1, help="processes per node; more than one trains with DDP", min=1)
    num_nodes: int = option(1, help="machines training together with DDP", min=1)

    def __post_init__(self):
        for spec in self.options():
            # Frozen: the coerced value replaces the given one through object.__setattr__.
            object.__setattr__(self, spec.name, spec.coerce(getattr(self, spec.name)))
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(f"--val-fraction + --test-fraction must stay below 1 to leave training data, "
                              f"got {self.val_fraction} + {self.test_fraction}.")

    @classmethod
    def options(cls) -> tuple[OptionSpec, ...]:
        """Every option's type, default, help text and allowed values, in field order."""
        return _option_specs(cls)

    @classmethod
    def spec(cls, name: str) -> OptionSpec:
        """The OptionSpec of the option called `name`."""
        return next(spec for spec in cls.options() if spec.name == name)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """{option name: help line with the values it takes and its default} (for --help and docs)."""
        return {spec.name: spec.describe() for spec in cls.options()}

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            raise ConfigError(f"Unknown config key {unknown[0]!r}.{suggest(str(unknown[0]), known)}")
        missing = [k for k in ("data", "model") if values.get(k) in (None, "")]
        if missing:
            raise ConfigError(f"The config needs {' and '.join(missing)} (e.g. --{missing[0]} ...).")
        return cls(**values)


@cache
def _option_specs(cls: type) -> tuple[OptionSpec, ...]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in fields(cls):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hints[f.name]))
        base = typing.get_origin(hints[f.name]) or hints[f.name]
        kind = args[0] if optional else base
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        meta = f.metadata
        specs.append(OptionSpec(f.name, kind, optional, default, meta.get("help", ""), meta.get("min"),
                                meta.get("max"), meta.get("above"), meta.get("below"), meta.get("choices")))
    return tuple(specs)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML config file, option names with `-` read as `_` (values checked by RunConfig)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}.")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of option: value.")
    odd = [k for k in values if not isinstance(k, str)]
    if odd:
        raise ConfigError(f"Config file {path}: {odd[0]!r} is not an option name; write option: value lines.")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    if "strategy_options" in values:  # callers merge into it before RunConfig checks the rest
        values["strategy_options"] = RunConfig.spec("strategy_options").coerce(values["strategy_options"])
    return values
