"""The plan of a run, built once before anything trains.

`complete_config` fills the strategy's defaults into a RunConfig and builds the strategy once;
`make_plan` loads the data, builds the backbone and head, lets a strategy that chooses from the
data choose, and returns a frozen `Plan`. Training reads the plan and returns its results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import MappingProxyType
from collections.abc import Mapping

import lightning as L
import numpy as np
import torch

from transferkit.backbones import create_backbone
from transferkit.config import RunConfig
from transferkit.data import LabeledData, Splits, load_data, make_splits
from transferkit.errors import ConfigError
from transferkit.inference import autocast
from transferkit.loading import run_batches, source_options
from transferkit.model import NN_HEADS, TargetScaling, TransferModel, make_head
from transferkit.strategies import create_strategy, get_strategy_class
from transferkit.strategies.base import ChoiceContext, Strategy, StrategyChoice
from transferkit.training import domain, features, heads

@dataclass(frozen=True)
class Plan:
    """Everything a run decided before training; never changed afterwards.

    Attributes:
        config: the completed config of the strategy that trains (the chosen one after `auto`).
        strategy: that strategy, built once; the model's parameters train as it says.
        model: backbone + head, prepared by the strategy (frozen groups, adapters, discriminator).
        splits: {"train", "val", "test"} LabeledData.
        scaling: the regression-target standardisation (identity for classification).
        choice: what a strategy that chooses from the data chose, and why (else None).
        target: unlabeled target-domain data (--target-data), else None.
        data_checks: what splitting found, for metrics.json: {"leakage": per held-out split,
            "split_warnings": [...]}.
    """

    config: RunConfig
    strategy: Strategy
    model: TransferModel
    splits: Mapping[str, LabeledData]
    scaling: TargetScaling
    choice: StrategyChoice | None = None
    target: LabeledData | None = None
    data_checks: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    def nonempty(self, *names: str) -> tuple[str, ...]:
        """The named splits that hold samples."""
        return tuple(n for n in names if len(self.splits[n]))


def complete_config(config: RunConfig) -> tuple[RunConfig, Strategy]:
    """`config` with epochs, lr and head filled from the strategy's defaults, and the strategy built from it.

    A strategy that chooses another from the data leaves them to the one it chooses (`make_plan`).
    """
    strategy = create_strategy(config.strategy, config.strategy_options)
    domain.check_target_data(config, strategy)
    if strategy.chooses_from_data:
        return config.replace(strategy_options=strategy.config.to_dict()), strategy
    defaults = dict(strategy.defaults)
    if config.task == "regression" and defaults["head"] == "logistic":
        defaults["head"] = "ridge"
    head = config.head or defaults["head"]
    if head not in NN_HEADS and not strategy.uses_cached_features:
        raise ConfigError(f"--head {head} fits on cached features only; use --strategy feature-extraction "
                          f"or one of: {', '.join(NN_HEADS)}.")
    heads.check_head(head, config.task)
    config = config.replace(epochs=config.epochs or defaults["epochs"], lr=config.lr or defaults["lr"], head=head,
                            strategy_options=strategy.config.to_dict())
    return config, strategy


def load_splits(config: RunConfig) -> Splits:
    """The train / val / test splits of `config`'s data (and --test-data)."""
    parts = load_data(config.data, **source_options(config))
    test = None
    if config.test_data:
        test = next(iter(load_data(config.test_data, **source_options(config)).values()))
    return make_splits(parts, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                       seed=config.seed, train_per_class=config.train_per_class, test_data=test)


def make_plan(config: RunConfig, strategy: Strategy | None = None) -> Plan:
    """Load data, build the backbone and head, and let the strategy choose, validate and prepare them.

    Args:
        config: a completed config (`complete_config`); completed here when `strategy` is None.
        strategy: the strategy `complete_config` built for it.
    """
    if strategy is None:
        config, strategy = complete_config(config)
    L.seed_everything(config.seed, workers=True, verbose=False)
    splits = load_splits(config)
    train = splits["train"]
    backbone = build_backbone(config, strategy, train.modality)
    config, strategy, backbone, choice = choose_strategy(config, strategy, splits, backbone)
    outputs = len(train.classes) if config.task == "classification" else 1
    head_kind = config.head if config.head in NN_HEADS else "linear"
    model = TransferModel(backbone, make_head(head_kind, backbone.num_features, outputs))
    strategy.validate(model, splits)
    strategy.prepare(model)
    target = None
    if config.target_data:
        domain.warn_if_unused(config, strategy)
        target = domain.load_target_data(config, train.modality)
    checks = {"leakage": splits.leakage_dict(), "split_warnings": list(splits.warnings)}
    return Plan(config, strategy, model, MappingProxyType(dict(splits)), TargetScaling.of(config.task, train.targets),
                choice=choice, target=target, data_checks=MappingProxyType(checks))


def build_backbone(config: RunConfig, strategy: Strategy, modality: str):
    backbone = create_backbone(config.model, pretrained=strategy.uses_pretrained, weights=config.weights,
                               max_length=config.max_length)
    if backbone.data_spec.modality != modality:
        raise ConfigError(f"Backbone {config.model!r} reads {backbone.data_spec.modality} but {config.data} "
                          f"holds {modality}; pick a {modality} backbone (see `transferkit models`).")
    return backbone


def choose_strategy(config: RunConfig, strategy: Strategy, splits: dict, backbone):
    """Let the strategy choose the one to train with from the data; returns (config, strategy, backbone, choice).

    The returned config names the chosen strategy with its defaults filled in, so the run folder
    saves (and a resume reuses) the strategy that actually trains.
    """
    context = ChoiceContext(config, splits, backbone,
                            features=lambda split: features.frozen_features(config, backbone, splits[split], split),
                            step_seconds=lambda: step_seconds(config, backbone, splits["train"]))
    choice = strategy.choose(context)
    if choice is None:
        return config, strategy, backbone, None
    if get_strategy_class(choice.strategy).chooses_from_data:
        raise ConfigError(f"Strategy {config.strategy!r} chose {choice.strategy!r}, which chooses again; "
                          "it must choose a strategy that trains.")
    config, chosen = complete_config(config.replace(strategy=choice.strategy, strategy_options=choice.options))
    if chosen.uses_pretrained != strategy.uses_pretrained:
        backbone = build_backbone(config, chosen, splits["train"].modality)
    return config, chosen, backbone, choice


def step_seconds(cfg: RunConfig, backbone, data, samples: int = 8) -> float:
    """Seconds per sample of a forward and backward pass through `backbone` (best of two batches).

    Run in eval mode so that BatchNorm statistics stay as they are; gradients are cleared after.
    """
    inputs = next(iter(run_batches(cfg.replace(batch_size=samples), backbone, data, train=False)))[0]
    backbone.eval()
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        with torch.enable_grad(), autocast(cfg.precision):
            backbone(inputs).float().sum().backward()
        best = min(best, time.perf_counter() - start)
    backbone.zero_grad(set_to_none=True)
    return best / min(samples, len(data))


def frozen_features_of(plan: Plan, *names: str) -> dict[str, np.ndarray]:
    """Frozen-backbone features of the named splits that hold samples, from the feature cache."""
    return {n: features.frozen_features(plan.config, plan.model.backbone, plan.splits[n], n)
            for n in plan.nonempty(*names)}
