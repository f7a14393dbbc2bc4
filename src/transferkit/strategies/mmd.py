"""DAN: fine-tuning with a multi-kernel MMD between source and target features (Long et al., 2015)."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.strategies.base import option
from transferkit.strategies.domain import DomainAdaptation, DomainAdaptationConfig, mmd_loss


@dataclass(frozen=True)
class MMDConfig(DomainAdaptationConfig):
    """Args:
        mmd_weight: weight of the squared MMD.
        mmd_kernels: Gaussian kernels in the family (bandwidths spaced by mmd_kernel_mul around the
            batch's mean pairwise squared distance).
        mmd_kernel_mul: ratio of neighbouring bandwidths.
    """

    mmd_weight: float = option(1.0, "weight of the multi-kernel MMD loss", min=0)
    mmd_kernels: int = option(5, "Gaussian kernels in the MMD family", min=1)
    mmd_kernel_mul: float = option(2.0, "ratio of neighbouring kernel bandwidths", min=0, min_open=True)


class MMD(DomainAdaptation):
    """Fine-tune every layer with an extra loss: the multi-kernel maximum mean discrepancy between the
    source and target features of each step's batches.

    When to use: unlabeled target-domain data; MMD matches the whole feature distribution (all
    moments, through the Gaussian kernels), not only its covariance as CORAL does.
    """

    name = "mmd"
    config_class = MMDConfig
    when_to_use = "Unlabeled target-domain data: minimise a multi-kernel MMD between domain features (DAN)."

    def domain_loss(self, model, source, target):
        return self.config.mmd_weight * mmd_loss(source, target, self.config.mmd_kernels, self.config.mmd_kernel_mul)
