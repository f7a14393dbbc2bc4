"""Partial fine-tuning: freeze the first K layer groups, train the rest and the head."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.errors import ConfigError
from transferkit.strategies.base import Strategy, StrategyConfig, option


@dataclass(frozen=True)
class PartialConfig(StrategyConfig):
    """Args:
        freeze: number of groups to freeze from the input (>= 1) or a fraction of them (< 1).
        backbone_lr_scale: learning rate of the trained backbone groups relative to the head.
        probe_init: start from a linear probe fitted on the frozen features (Kumar et al.,
            2022, LP-FT), so fine-tuning starts where feature extraction ends.
        train_bn_stats: update BatchNorm running statistics on the new data; off by default,
            as small batches of a new domain make them drift away from what the pretrained
            layers expect (the Keras fine-tuning guide keeps BatchNorm in inference mode too).
        head_warmup: epochs that train only the head before the backbone groups join.
    """

    freeze: float = option(0.5, "freeze the first K layer groups (K >= 1) or this fraction of them (< 1)", min=0,
                           note="a count or a fraction", tune=(0.2, 0.8, "float"))
    backbone_lr_scale: float = option(0.1, "backbone learning rate relative to the head's", min=0, min_open=True,
                                      tune=(0.01, 1.0, "log"))
    head_warmup: int = option(0, "epochs that train only the head first", min=0)
    probe_init: bool = option(True, "start the head from a linear probe on the frozen features (LP-FT)")
    train_bn_stats: bool = option(False, "update BatchNorm running statistics on the new data (off: kept as pretrained)")


class Partial(Strategy):
    """Fine-tune only the upper layers (Yosinski et al., 2014: lower layers are the most general).

    When to use: moderate data; the low-level features transfer, the high-level ones need to adapt.
    """

    name = "partial"
    config_class = PartialConfig
    when_to_use = "Moderate data: freeze the first K groups (--freeze K or a fraction), tune the rest."

    def frozen_count(self, n_groups: int) -> int:
        k = self.config.freeze
        count = round(k * n_groups) if k < 1 else int(k)
        if count > n_groups:
            raise ConfigError(f"--freeze {int(k)} is more than the backbone's {n_groups} layer groups.")
        return count

    def validate(self, model, data):
        self.frozen_count(len(self.group_names(model)))

    def trainable_at(self, epoch, group_names):
        if epoch < self.config.head_warmup:
            return []
        return list(group_names[self.frozen_count(len(group_names)):])

    def lr_scale(self, depth_from_top):
        return self.config.backbone_lr_scale
