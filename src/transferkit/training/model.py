"""TransferModel: a backbone plus a new head; the unit that strategies adapt and runs save."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from transferkit.backbones.base import Backbone
from transferkit.errors import ConfigError

NN_HEADS = ("linear", "mlp")


def make_head(kind: str, in_features: int, out_features: int, hidden: int = 256, dropout: float = 0.1) -> nn.Module:
    """A new task head: `linear` (one layer) or `mlp` (one hidden layer with ReLU and dropout)."""
    if kind == "linear":
        return nn.Linear(in_features, out_features)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                             nn.Linear(hidden, out_features))
    raise ConfigError(f"Unknown neural head {kind!r}. Choose one of: {', '.join(NN_HEADS)}.")


class TransferModel(nn.Module):
    """`head(backbone(x))`. BatchNorm layers whose parameters are frozen stay in eval mode."""

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head
        #: Keep every BatchNorm's running statistics fixed, also in trained groups (set by strategies).
        self.freeze_bn_stats = False

    def forward(self, inputs) -> torch.Tensor:
        return self.head(self.backbone(inputs))

    def forward_with_features(self, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(inputs)
        return self.head(features), features

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            freeze_frozen_batchnorm(self.backbone, all_layers=self.freeze_bn_stats)
        return self

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}


def freeze_frozen_batchnorm(module: nn.Module, all_layers: bool = False) -> None:
    """Put BatchNorm layers whose affine parameters are all frozen (or all, if asked) in eval mode."""
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            params = list(m.parameters(recurse=False))
            if all_layers or (params and not any(p.requires_grad for p in params)):
                m.eval()
