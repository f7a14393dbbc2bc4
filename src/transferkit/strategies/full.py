"""End-to-end fine-tuning, with a head warm-up and optional layer-wise learning-rate decay."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.strategies.base import Strategy, StrategyConfig, option


@dataclass(frozen=True)
class FullConfig(StrategyConfig):
    """Args:
        backbone_lr_scale: learning rate of the backbone's top group relative to the head.
        layer_decay: each lower group's rate is the one above times this (1.0: no decay;
            Clark et al., 2020 and BEiT use 0.65-0.9).
        probe_init: start from a linear probe fitted on the frozen features (Kumar et al.,
            2022, LP-FT), so fine-tuning starts where feature extraction ends.
        train_bn_stats: update BatchNorm running statistics on the new data; off by default,
            as small batches of a new domain make them drift away from what the pretrained
            layers expect (the Keras fine-tuning guide keeps BatchNorm in inference mode too).
        head_warmup: epochs that train only the head first, so a random head does not send
            large gradients into pretrained layers (Kumar et al., 2022, LP-FT).
    """

    backbone_lr_scale: float = option(0.1, "backbone learning rate relative to the head's", min=0, min_open=True,
                                      tune=(0.01, 1.0, "log"))
    layer_decay: float = option(1.0, "learning-rate multiplier per layer group going down (1: none)", min=0, max=1,
                                min_open=True, tune=(0.5, 1.0, "float"))
    head_warmup: int = option(0, "epochs that train only the head first", min=0)
    probe_init: bool = option(True, "start the head from a linear probe on the frozen features (LP-FT)")
    train_bn_stats: bool = option(False, "update BatchNorm running statistics on the new data (off: kept as pretrained)")


class Full(Strategy):
    """Fine-tune every layer end to end.

    When to use: enough labels (hundreds per class) or a target far from the pretraining data.
    """

    name = "full"
    config_class = FullConfig
    when_to_use = "Enough labels or a distant domain: every layer trains (probe-initialised head, lower backbone lr)."

    def trainable_at(self, epoch, group_names):
        return [] if epoch < self.config.head_warmup else list(reversed(group_names))

    def lr_scale(self, depth_from_top):
        return self.config.backbone_lr_scale * self.config.layer_decay ** depth_from_top
