"""Gradual unfreezing with discriminative learning rates (Howard and Ruder, 2018, ULMFiT)."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.strategies.base import Strategy, StrategyConfig, option


@dataclass(frozen=True)
class GradualConfig(StrategyConfig):
    """Args:
        unfreeze_every: epochs between unfreezing one more group, top down; the head trains alone first.
        backbone_lr_scale: learning rate of the topmost backbone group relative to the head.
        layer_decay: each lower group's rate is the one above times this (discriminative rates).
        probe_init: start the head from a linear probe on the frozen features (LP-FT).
        train_bn_stats: update BatchNorm running statistics of unfrozen groups (off: kept fixed).
    """

    unfreeze_every: int = option(1, "epochs between unfreezing one more layer group", min=1, tune=(1, 3, "int"))
    backbone_lr_scale: float = option(0.3, "backbone learning rate relative to the head's", min=0, min_open=True,
                                      tune=(0.01, 1.0, "log"))
    layer_decay: float = option(0.7, "learning-rate multiplier per layer group going down (1: none)", min=0, max=1,
                                min_open=True, tune=(0.5, 1.0, "float"))
    probe_init: bool = option(True, "start the head from a linear probe on the frozen features (LP-FT)")
    train_bn_stats: bool = option(False, "update BatchNorm running statistics on the new data (off: kept as pretrained)")


class Gradual(Strategy):
    """Train the head, then unfreeze one more layer group every N epochs from the top down.

    When to use: small or medium data where full fine-tuning forgets (catastrophic forgetting);
    lower groups, which hold the most general features, move the least and the latest.
    """

    name = "gradual"
    config_class = GradualConfig
    when_to_use = "Small/medium data, avoid forgetting: head first, then one more group every N epochs."

    def trainable_at(self, epoch, group_names):
        count = min(len(group_names), epoch // self.config.unfreeze_every)
        return list(reversed(group_names))[:count]

    def lr_scale(self, depth_from_top):
        return self.config.backbone_lr_scale * self.config.layer_decay ** depth_from_top
