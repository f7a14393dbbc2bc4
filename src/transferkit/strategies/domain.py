"""What the unsupervised domain-adaptation strategies share: their losses and a base strategy.

Labeled source data and unlabeled target data share one label set; each training step sees a source
batch and a target batch (`--target-data`), and a domain loss pulls the backbone's features of the
two domains together while the task loss keeps them discriminative on the source labels.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch

from transferkit.errors import ConfigError
from transferkit.strategies.full import Full, FullConfig


class GradientReversal(torch.autograd.Function):
    """Identity on the way forward; multiplies the gradient by -coeff on the way back (Ganin et al., 2016)."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coeff * grad, None


def reverse_gradient(inputs: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    return GradientReversal.apply(inputs, coeff)


def dann_schedule(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s adversarial weight 2 / (1 + exp(-gamma p)) - 1: 0 at the start, near 1 at the end."""
    progress = min(1.0, max(0.0, progress))
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun and Saenko, 2016): ||C_s - C_t||_F^2 / (4 d^2) of the feature covariances."""
    if len(source) < 2 or len(target) < 2:  # a covariance needs two samples
        return source.new_zeros(())
    dims = source.shape[1]
    difference = torch.cov(source.T) - torch.cov(target.T)
    return difference.pow(2).sum() / (4 * dims * dims)


def mmd_loss(source: torch.Tensor, target: torch.Tensor, kernels: int = 5, kernel_mul: float = 2.0) -> torch.Tensor:
    """Multi-kernel MMD^2 (Long et al., 2015, DAN), biased estimate, averaged over Gaussian kernels.

    The bandwidths are the mean pairwise squared distance of the joint batch times kernel_mul^i for
    i = -kernels // 2 .. (kernels - 1) // 2, so the family spans scales below and above the data's own.
    """
    joint = torch.cat([source, target])
    distances = torch.cdist(joint, joint).pow(2)
    n = len(joint)
    base = (distances.sum() / max(1, n * n - n)).detach().clamp_min(1e-12)
    bandwidths = [base * kernel_mul ** (i - kernels // 2) for i in range(kernels)]
    kernel = sum(torch.exp(-distances / b) for b in bandwidths) / kernels
    s = len(source)
    return kernel[:s, :s].mean() + kernel[s:, s:].mean() - 2 * kernel[:s, s:].mean()


@dataclass(frozen=True)
class DomainAdaptationConfig(FullConfig):
    """Settings of full fine-tuning (see FullConfig); each domain-adaptation strategy adds its weight."""


class DomainAdaptation(Full, abc.ABC):
    """Full fine-tuning plus a domain loss between source and target features, logged as `loss/<name>`.

    Model selection stays honest: validation and early stopping read the source validation split
    only, so target labels (in --test-data) never choose the model.
    """

    needs_target_data = True
    source_only_baseline = "full"

    def extra_loss(self, model, batch, outputs):
        target = outputs.get("target_domain_features")
        if target is None:
            raise ConfigError(f"Strategy {self.name!r} trains on source and target batches together; "
                              "pass --target-data.")
        return {f"loss/{self.name}": self.domain_loss(model, outputs["features"].float(), target.float())}

    @abc.abstractmethod
    def domain_loss(self, model, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted domain loss between a batch of source and a batch of target features (each subclass's own)."""
