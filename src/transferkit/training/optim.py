"""The only place optimizers, parameter groups and learning-rate schedules are built."""

from __future__ import annotations

import math

from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LRScheduler

from transferkit.model import ParamGroup


def _torch_group(group: ParamGroup, base_lr: float, weight_decay: float) -> dict:
    lr = base_lr * group.lr_scale
    wd = weight_decay if group.weight_decay is None else group.weight_decay
    return {"params": group.params, "lr": lr, "initial_lr": lr, "weight_decay": wd, "name": group.name}


def build_optimizer(groups: list[ParamGroup], base_lr: float, weight_decay: float) -> Optimizer:
    """AdamW over the given named groups (empty groups are dropped)."""
    torch_groups = [_torch_group(g, base_lr, weight_decay) for g in groups if g.params]
    return AdamW(torch_groups, lr=base_lr, weight_decay=weight_decay)


def add_param_groups(optimizer: Optimizer, groups: list[ParamGroup], base_lr: float, weight_decay: float,
                     scheduler: WarmupCosine | None = None) -> None:
    """Append newly trainable groups (gradual unfreezing); their lr follows the current schedule."""
    factor = scheduler.factor(scheduler.last_epoch) if scheduler is not None else 1.0
    for group in groups:
        if not group.params:
            continue
        torch_group = _torch_group(group, base_lr, weight_decay)
        torch_group["lr"] = torch_group["initial_lr"] * factor
        optimizer.add_param_group(torch_group)


class WarmupCosine(LRScheduler):
    """Linear warm-up then cosine decay, per step, for however many groups the optimizer has now."""

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.01):
        self.total_steps = max(1, total_steps)
        self.warmup_steps = warmup_steps
        self.min_factor = min_factor
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [g["initial_lr"] * f for g in self.optimizer.param_groups]
