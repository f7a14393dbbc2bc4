"""DAN: fine-tuning with a multi-kernel MMD between source and target features (Long et al., 2015)."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.errors import ConfigError
from transferkit.strategies.domain import DomainAdaptation, DomainAdaptationConfig, mmd_loss


@dataclass(frozen=True)
class MMDConfig(DomainAdaptationConfig):
    """Args:
        mmd_weight: weight of the squared MMD.
        mmd_kernels: Gaussian kernels in the family (bandwidths spaced by mmd_kernel_mul around the
            batch's mean pairwise squared distance).
        mmd_kernel_mul: ratio of neighbouring bandwidths.
    """

    mmd_weight: float = 1.0
    mmd_kernels: int = 5
    mmd_kernel_mul: float = 2.0

    def __post_init__(self):
        super().__post_init__()
        self._check_non_negative(mmd_weight=self.mmd_weight)
        if self.mmd_kernels < 1 or self.mmd_kernel_mul <= 0:
            raise ConfigError(f"--mmd-kernels must be >= 1 and --mmd-kernel-mul > 0, got {self.mmd_kernels} "
                              f"and {self.mmd_kernel_mul}.")


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
