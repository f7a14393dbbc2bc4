"""A strategy is a frozen config plus hooks that the one training path calls.

The base class implements the common mechanics: which backbone layer groups are trainable at
each epoch (`trainable_at`), freezing the rest, the per-group learning-rate scale, and a
state that a resumed run restores. Strategies override only what makes them different.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch

from transferkit.errors import ConfigError, suggest
from transferkit.model import ParamGroup


def option(default: Any, help: str, *, flag: str | None = None, min: float | None = None,
           max: float | None = None, min_open: bool = False, max_open: bool = False, note: str = "",
           tune: tuple | None = None) -> Any:
    """A strategy config field that carries its own CLI flag, help text, valid range and tuning range.

    Args:
        default: the field's default.
        help: one line for `--help`.
        flag: the CLI flag without dashes (default: the field name with "-" for "_").
        min: smallest valid value (`min_open`: excluded); checked when the config is built.
        max: largest valid value (`max_open`: excluded).
        note: words added to the range in the error message, e.g. "a count or a fraction".
        tune: (low, high, "log" | "float" | "int"): the range `transferkit tune` searches.
    """
    metadata = {"help": help, "flag": flag, "min": min, "max": max, "min_open": min_open, "max_open": max_open,
                "note": note, "tune": tune}
    return field(default=default, metadata=metadata)


def flag_of(f: dataclasses.Field) -> str:
    """The CLI flag of a strategy config field, e.g. `--lora-r`."""
    return "--" + (f.metadata.get("flag") or f.name.replace("_", "-"))


def describe_range(f: dataclasses.Field) -> str | None:
    """The valid range of a field in words: ">= 0", "positive", "in (0, 1]"; None when unbounded."""
    low, high, meta = f.metadata.get("min"), f.metadata.get("max"), f.metadata
    if low is None and high is None:
        return None
    if high is None:
        text = ("positive" if low == 0 else f"> {low:g}") if meta.get("min_open") else f">= {low:g}"
    elif low is None:
        text = f"< {high:g}" if meta.get("max_open") else f"<= {high:g}"
    else:
        text = (f"in {'(' if meta.get('min_open') else '['}{low:g}, {high:g}"
                f"{')' if meta.get('max_open') else ']'}")
    return f"{text} ({meta['note']})" if meta.get("note") else text


def _in_range(f: dataclasses.Field, value: Any) -> bool:
    low, high, meta = f.metadata.get("min"), f.metadata.get("max"), f.metadata
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return True
    if value != value:  # NaN is in no range
        return low is None and high is None
    if low is not None and (value <= low if meta.get("min_open") else value < low):
        return False
    return not (high is not None and (value >= high if meta.get("max_open") else value > high))


@dataclass(frozen=True)
class HeadOptions:
    """How a scikit-learn head fits on frozen features (a strategy's `head_options`).

    Attributes:
        C: the logistic head's inverse regularisation; None: chosen on the validation split.
        ridge_alpha: the ridge head's regularisation; None: chosen likewise.
        standardize: standardise features per dimension before fitting (else one global scale).
    """

    C: float | None = None
    ridge_alpha: float | None = None
    standardize: bool = False


@dataclass(frozen=True)
class StrategyConfig:
    """Settings shared by every strategy; subclasses add their own fields (declared with `option`).

    Ranges declared in the fields' metadata are checked when the config is built; a subclass that
    checks more (relations between fields) calls `super().__post_init__()` first.
    """

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not _in_range(f, value):
                raise ConfigError(f"{flag_of(f)} must be {describe_range(f)}, got {value}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_options(cls, options: dict[str, Any], strategy: str) -> StrategyConfig:
        known = {f.name: f for f in fields(cls)}
        for key in options:
            if key not in known:
                hint = suggest(key, known) or (f" Valid: {', '.join(known)}." if known else " It takes none.")
                raise ConfigError(f"Strategy {strategy!r} has no option {key!r}.{hint}")
        try:
            return cls(**{k: _coerce(known[k], v) for k, v in options.items()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Bad option for strategy {strategy!r}: {exc}") from None


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if value is None:
        return None
    if kind.startswith("float"):
        return float(value)
    if kind.startswith("int"):
        return int(value)
    if kind.startswith("bool") and isinstance(value, str):
        if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise ValueError(f"{f.name} takes true or false, got {value!r}")
        return value.lower() in ("true", "yes", "1")
    return value


@dataclass(frozen=True)
class StrategyChoice:
    """What a strategy that chooses from the data (`Strategy.choose`) picked, and why.

    Attributes:
        by: the choosing strategy's name.
        strategy: the registered strategy the run trains with.
        options: that strategy's options.
        reasons: the rule's steps, in words, from the measurements to the choice.
        signals: the measurements the rule read (labels per class, feature fit, ...).
    """

    by: str
    strategy: str
    options: dict[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    signals: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "chose": self.strategy, "options": dict(self.options),
                "reasons": list(self.reasons), "signals": dict(self.signals)}


@dataclass(frozen=True)
class ChoiceContext:
    """What `Strategy.choose` may look at before anything trains.

    Attributes:
        config: the run's config (epochs, lr and head still as the user gave them).
        splits: {"train", "val", "test"} LabeledData.
        backbone: the backbone, pretrained as the resolving strategy asked.
        features: `features(split)`: frozen backbone features of a split, from the feature cache.
        step_seconds: `step_seconds()`: measured seconds of one training step per sample.
    """

    config: Any
    splits: dict
    backbone: Any
    features: Callable[[str], np.ndarray]
    step_seconds: Callable[[], float]


class Strategy:
    """Hooks, all with sensible defaults. Subclasses set the class attributes below."""

    name: ClassVar[str]
    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig
    #: One line for `transferkit strategies`: when to use it.
    when_to_use: ClassVar[str] = ""
    #: Defaults for the run-level epochs, lr and head when the user gives none.
    defaults: ClassVar[dict[str, Any]] = {"epochs": 10, "lr": 1e-3, "head": "linear"}
    uses_pretrained: ClassVar[bool] = True
    uses_cached_features: ClassVar[bool] = False
    #: True for a strategy that only picks another registered strategy from the data (`choose`).
    chooses_from_data: ClassVar[bool] = False
    #: True for a domain-adaptation strategy: each training batch also carries the inputs of a batch of
    #: unlabeled target-domain data (`--target-data`), and `extra_loss` finds their backbone features
    #: in `outputs["target_domain_features"]`.
    needs_target_data: ClassVar[bool] = False
    #: The registered strategy that trains the same way on the source data alone: the baseline a
    #: comparison measures a domain-adaptation strategy against (None: not a domain-adaptation strategy).
    source_only_baseline: ClassVar[str | None] = None

    def __init__(self, config: StrategyConfig | None = None):
        self.config = config or self.config_class()
        self.unfrozen: list[str] = []

    # ---- hooks ---------------------------------------------------------------------------
    def choose(self, context: ChoiceContext) -> StrategyChoice | None:
        """Name the registered strategy to train with, chosen from the data; None: train with this one.

        `fit` calls it once, after loading the data and before building the model.
        """
        return None

    def validate(self, model, data: dict) -> None:
        """Refuse impossible setups before the first batch."""

    def prepare(self, model) -> None:
        """Freeze every backbone group not trainable at epoch 0."""
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        for p in model.head.parameters():
            p.requires_grad_(True)
        self.unfrozen = []
        model.freeze_bn_stats = not getattr(self.config, "train_bn_stats", True)
        self._unfreeze(model, self.trainable_at(0, self.group_names(model)))

    def trainable_at(self, epoch: int, group_names: list[str]) -> list[str]:
        """Backbone groups trainable at `epoch`, in the order they were first unfrozen."""
        return list(group_names)

    def lr_scale(self, depth_from_top: int) -> float:
        """Learning-rate scale of a backbone group `depth_from_top` groups below the head."""
        return 1.0

    def param_groups(self, model) -> list[ParamGroup]:
        """Named groups now trainable: the head first, then backbone groups in unfreeze order."""
        groups = {g.name: g for g in model.backbone.layer_groups()}
        names = list(groups)
        result = [ParamGroup("head", list(model.head.parameters()))]
        for name in self.unfrozen:
            depth = len(names) - 1 - names.index(name)
            result.append(ParamGroup(f"backbone.{name}", groups[name].parameters(), self.lr_scale(depth)))
        return result

    def on_epoch_start(self, model, epoch: int) -> list[ParamGroup]:
        """Unfreeze what the schedule says; return the newly trainable groups for the optimizer."""
        wanted = self.trainable_at(epoch, self.group_names(model))
        new = [n for n in wanted if n not in self.unfrozen]
        if not new:
            return []
        self._unfreeze(model, new)
        return [g for g in self.param_groups(model) if g.name in {f"backbone.{n}" for n in new}]

    def probe_head(self, task: str, head: str) -> str | None:
        """The scikit-learn head ("logistic" / "ridge") fitted on frozen features to start a linear `head` from
        before training (a linear probe, LP-FT: Kumar et al., 2022), or None to start from a random head.

        The default reads the config's `probe_init` field, where a strategy has one.
        """
        if not getattr(self.config, "probe_init", False) or head != "linear":
            return None
        return "logistic" if task == "classification" else "ridge"

    def head_options(self) -> HeadOptions:
        """How a scikit-learn head (the run's `--head logistic|ridge`, or a probe) fits: strengths chosen on val."""
        return HeadOptions()

    def on_train_step(self, step: int, total_steps: int) -> None:
        """Called before each training step with the step index and the run's total number of steps."""

    def extra_loss(self, model, batch, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named extra loss terms (e.g. `loss/l2sp`), each added to the task loss and logged."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"unfrozen": list(self.unfrozen)}

    def load_state_dict(self, state: dict[str, Any], model) -> None:
        """Restore the schedule position of a resumed run (before its optimizer is rebuilt)."""
        self._unfreeze(model, [n for n in state.get("unfrozen", []) if n not in self.unfrozen])

    def summary(self, model) -> list[dict[str, Any]]:
        """Trainable and total parameters per group."""
        return summary_rows(model)

    def export_model(self, model):
        """The plain TransferModel to save for inference (LoRA merges its adapters here)."""
        return model

    # ---- helpers -------------------------------------------------------------------------
    @staticmethod
    def group_names(model) -> list[str]:
        return [g.name for g in model.backbone.layer_groups()]

    def _unfreeze(self, model, names: list[str]) -> None:
        groups = {g.name: g for g in model.backbone.layer_groups()}
        for name in names:
            for p in groups[name].parameters():
                p.requires_grad_(True)
            self.unfrozen.append(name)


def summary_rows(model, exclude: set[int] = frozenset()) -> list[dict[str, Any]]:
    """Trainable and total parameters of the head and each backbone group, leaving out ids in `exclude`."""
    groups = [("head", list(model.head.parameters()))]
    groups += [(f"backbone.{g.name}", g.parameters()) for g in model.backbone.layer_groups()]
    rows = []
    for name, params in groups:
        params = [p for p in params if id(p) not in exclude]
        rows.append({"group": name, "trainable": _count(params, True), "total": _count(params)})
    return rows


def _count(params, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in params if p.requires_grad or not trainable_only)
