"""The model nouns every part shares: TransferModel (backbone + head), its heads, named parameter groups
and the regression-target scaling.

Strategies adapt a TransferModel, the engine trains it, runs save and reload it; all of them import
these names from here, so none of them imports another for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from transferkit.backbones.base import Backbone
from transferkit.errors import ConfigError

NN_HEADS = ("linear", "mlp")


@dataclass
class ParamGroup:
    """A named set of parameters trained with `base_lr * lr_scale` (built into the optimizer by training.optim)."""

    name: str
    params: list[nn.Parameter]
    lr_scale: float = 1.0
    weight_decay: float | None = None  # None: the run's weight decay


@dataclass(frozen=True)
class TargetScaling:
    """Regression targets are trained standardised: `(y - mean) / std`; outputs are mapped back with `restore`.

    Classification runs keep the identity (0, 1). Built once, from the training targets (`of`).
    """

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def of(cls, task: str, targets: np.ndarray) -> TargetScaling:
        if task != "regression":
            return cls()
        return cls(float(np.mean(targets)), float(np.std(targets) or 1.0))

    def standardise(self, values):
        return (values - self.mean) / self.std

    def restore(self, values):
        return values * self.std + self.mean

    def as_tuple(self) -> tuple[float, float]:
        return (self.mean, self.std)


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
