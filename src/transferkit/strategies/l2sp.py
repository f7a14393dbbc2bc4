"""L2-SP: fine-tuning regularised toward the pretrained weights (Li, Grandvalet and Davoine, 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from transferkit.strategies.base import option
from transferkit.strategies.full import Full, FullConfig


@dataclass(frozen=True)
class L2SPConfig(FullConfig):
    """Args:
        alpha: weight of alpha/2 * ||w - w0||^2 over the backbone (w0: pretrained weights).
        beta: weight of beta/2 * ||w||^2 over the new head.
    """

    alpha: float = option(0.01, "weight of alpha/2 ||w - w0||^2 over the backbone", min=0, tune=(1e-4, 1.0, "log"))
    beta: float = option(0.01, "weight of beta/2 ||w||^2 over the new head", min=0)


class L2SP(Full):
    """End-to-end fine-tuning with loss = task + alpha/2 ||w - w0||^2 + beta/2 ||head||^2.

    When to use: small data where full fine-tuning overfits; the penalty keeps the solution near
    the pretrained one. It replaces weight decay, which would pull toward zero instead.
    """

    name = "l2sp"
    config_class = L2SPConfig
    when_to_use = "Small data, full fine-tuning that overfits: pull weights toward the pretrained ones."

    def prepare(self, model):
        self.reference = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
        super().prepare(model)

    def param_groups(self, model):
        groups = super().param_groups(model)
        for group in groups:
            group.weight_decay = 0.0
        return groups

    def extra_loss(self, model, batch, outputs):
        sp = outputs["logits"].new_zeros(())
        for name, p in model.backbone.named_parameters():
            if p.requires_grad:
                ref = self.reference[name]
                if ref.device != p.device:
                    ref = self.reference[name] = ref.to(p.device)
                sp = sp + (p - ref).pow(2).sum()
        head = sum(p.pow(2).sum() for n, p in model.head.named_parameters() if n.endswith("weight"))
        return {"loss/l2sp": 0.5 * self.config.alpha * sp, "loss/head_l2": 0.5 * self.config.beta * head}
