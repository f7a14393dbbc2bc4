"""Strategy registry: `create_strategy("gradual", {"unfreeze_every": 2})`, `list_strategies()`."""

from __future__ import annotations

from typing import Any

from transferkit.registry import Registry
from transferkit.strategies.auto import Auto
from transferkit.strategies.base import Strategy, StrategyConfig
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


__all__ = ["STRATEGIES", "Strategy", "StrategyConfig", "create_strategy", "get_strategy_class",
           "list_strategies", "register_strategy"]
