"""Strategy registry: `create_strategy("gradual", {"unfreeze_every": 2})`, `list_strategies()`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from transferkit.registry import Registry
from transferkit.strategies.auto import Auto
from transferkit.strategies.base import Strategy, StrategyConfig, describe_range, flag_of
from transferkit.strategies.coral import Coral
from transferkit.strategies.dann import DANN
from transferkit.strategies.feature_extraction import FeatureExtraction
from transferkit.strategies.full import Full
from transferkit.strategies.gradual import Gradual
from transferkit.strategies.l2sp import L2SP
from transferkit.strategies.lora import Lora
from transferkit.strategies.mmd import MMD
from transferkit.strategies.partial import Partial
from transferkit.strategies.scratch import Scratch

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Register a Strategy subclass under its `name`; usable as a class decorator."""
    return STRATEGIES.register(cls.name, cls)


for _cls in (FeatureExtraction, Partial, Gradual, Full, L2SP, Lora, Scratch, Auto, DANN, Coral, MMD):
    register_strategy(_cls)


def get_strategy_class(name: str) -> type[Strategy]:
    return STRATEGIES.get(name)


def create_strategy(name: str, options: dict[str, Any] | None = None) -> Strategy:
    """Build strategy `name` with its config validated from `options`."""
    cls = STRATEGIES.get(name)
    return cls(cls.config_class.from_options(dict(options or {}), name))


def list_strategies() -> list[dict[str, Any]]:
    return [{"name": n, "when_to_use": STRATEGIES.get(n).when_to_use,
             "options": STRATEGIES.get(n).config_class().to_dict(), **STRATEGIES.get(n).defaults}
            for n in STRATEGIES.names()]


@dataclass(frozen=True)
class StrategyOption:
    """One option of the registered strategies, as the CLI offers it (several strategies may share it).

    Attributes:
        name: the config field (the key in `strategy_options`).
        flag: the CLI flag, e.g. `--lora-r`.
        kind: float, int, str or bool.
        help: the field's help text.
        defaults: {strategy: its default}.
        valid: the valid range in words (None: unbounded).
        tune: (low, high, "log" | "float" | "int") searched by `transferkit tune`, or None.
    """

    name: str
    flag: str
    kind: type
    help: str
    defaults: dict[str, Any]
    valid: str | None = None
    tune: tuple | None = None


def _kind(f) -> type:
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
    return next((t for t in (bool, float, int) if text.startswith(t.__name__)), str)


def strategy_options() -> list[StrategyOption]:
    """Every option of every registered strategy, one entry per field name, from the config fields' metadata."""
    options: dict[str, StrategyOption] = {}
    for name in STRATEGIES.names():
        for f in fields(STRATEGIES.get(name).config_class):
            known = options.get(f.name)
            if known is None:
                options[f.name] = StrategyOption(f.name, flag_of(f), _kind(f), f.metadata.get("help", ""),
                                                 {name: f.default}, describe_range(f), f.metadata.get("tune"))
            else:
                known.defaults[name] = f.default
    return list(options.values())


def search_space() -> dict[str, tuple[str, float, float]]:
    """{option: (kind, low, high)} of the options whose fields declare a tuning range (for `tune`)."""
    return {o.name: (o.tune[2], o.tune[0], o.tune[1]) for o in strategy_options() if o.tune}


__all__ = ["STRATEGIES", "Strategy", "StrategyConfig", "StrategyOption", "create_strategy", "get_strategy_class",
           "list_strategies", "register_strategy", "search_space", "strategy_options"]
