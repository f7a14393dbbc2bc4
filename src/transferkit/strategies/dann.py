"""DANN: domain-adversarial fine-tuning through a gradient-reversal layer (Ganin et al., 2016)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.strategies.base import option, summary_rows
from transferkit.strategies.domain import DomainAdaptation, DomainAdaptationConfig, dann_schedule, reverse_gradient
from transferkit.model import TransferModel
from transferkit.model import ParamGroup

DISCRIMINATOR = "domain_discriminator"


@dataclass(frozen=True)
class DANNConfig(DomainAdaptationConfig):
    """Args:
        dann_weight: the largest weight of the reversed gradient the features receive; the weight
            ramps up as dann_weight * (2 / (1 + exp(-10 p)) - 1) over training progress p.
        discriminator_hidden: width of the discriminator's two hidden layers.
    """

    dann_weight: float = option(1.0, "largest weight of the reversed domain gradient (ramped up)", min=0)
    discriminator_hidden: int = option(256, "width of the domain discriminator's hidden layers", min=1)


def make_discriminator(in_features: int, hidden: int) -> nn.Module:
    """A small MLP scoring source (1) against target (0); no BatchNorm, so it adds no running statistics."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, 1))


class DANN(DomainAdaptation):
    """Fine-tune every layer while a domain discriminator, fed the features through a gradient-reversal
    layer, learns to tell source from target and the backbone learns to make it fail.

    When to use: labeled source data and unlabeled data of the domain you deploy on (other sensors,
    writers, styles) with the same classes. `loss/dann` is the discriminator's binary cross-entropy:
    about 0.69 (chance) when it cannot tell the domains apart, above when the reversed gradient makes
    the features mislead it. The discriminator trains with the model and is left out of the saved model.
    """

    name = "dann"
    config_class = DANNConfig
    when_to_use = "Unlabeled target-domain data: adversarial domain discriminator via gradient reversal (DANN)."

    def __init__(self, config=None):
        super().__init__(config)
        self.progress = 0.0

    def prepare(self, model):
        super().prepare(model)
        discriminator = make_discriminator(model.backbone.num_features, self.config.discriminator_hidden)
        setattr(model, DISCRIMINATOR, discriminator.requires_grad_(True))

    def param_groups(self, model):
        """Head, discriminator, then the backbone groups: a group unfrozen later is appended after these,
        so a resumed run's optimizer lists its groups in the order the interrupted one did."""
        head, *backbone = super().param_groups(model)
        return [head, ParamGroup(DISCRIMINATOR, list(getattr(model, DISCRIMINATOR).parameters())), *backbone]

    def on_train_step(self, step, total_steps):
        self.progress = step / max(1, total_steps)

    def adversarial_weight(self) -> float:
        return self.config.dann_weight * dann_schedule(self.progress)

    def domain_loss(self, model, source, target):
        features = reverse_gradient(torch.cat([source, target]), self.adversarial_weight())
        logits = getattr(model, DISCRIMINATOR)(features).squeeze(-1)
        domains = torch.cat([torch.ones(len(source)), torch.zeros(len(target))]).to(logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), domains)

    def summary(self, model):
        discriminator = getattr(model, DISCRIMINATOR)
        rows = summary_rows(model)
        rows.append({"group": DISCRIMINATOR,
                     "trainable": sum(p.numel() for p in discriminator.parameters() if p.requires_grad),
                     "total": sum(p.numel() for p in discriminator.parameters())})
        return rows

    def export_model(self, model):
        """The backbone and head alone: the discriminator only serves training."""
        plain = TransferModel(model.backbone, model.head)
        plain.freeze_bn_stats = model.freeze_bn_stats
        plain.training = model.training  # not .train(): that would reset the modes of the shared layers
        return plain
