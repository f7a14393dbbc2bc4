"""Deep CORAL: align the second-order statistics of source and target features (Sun and Saenko, 2016)."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.strategies.base import option
from transferkit.strategies.domain import DomainAdaptation, DomainAdaptationConfig, coral_loss


@dataclass(frozen=True)
class CoralConfig(DomainAdaptationConfig):
    """Args:
        coral_weight: weight of ||C_s - C_t||_F^2 / (4 d^2); the paper picks it so that the CORAL and
            classification losses end training at about the same size.
    """

    coral_weight: float = option(1.0, "weight of the CORAL loss", min=0)


class Coral(DomainAdaptation):
    """Fine-tune every layer with an extra loss matching the feature covariances of source and target batches.

    When to use: unlabeled target-domain data and a shift in feature statistics (lighting, scanners,
    style); no extra parameters and no adversarial game, so it is the most stable of the three.
    """

    name = "coral"
    config_class = CoralConfig
    when_to_use = "Unlabeled target-domain data: match source and target feature covariances (Deep CORAL)."

    def domain_loss(self, model, source, target):
        return self.config.coral_weight * coral_loss(source, target)
