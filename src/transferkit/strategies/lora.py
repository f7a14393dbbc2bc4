"""LoRA: low-rank adapters injected by PEFT into a frozen backbone (Hu et al., 2022)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from transferkit.errors import ConfigError
from transferkit.strategies.base import Strategy, StrategyConfig, option, summary_rows
from transferkit.model import ParamGroup


@dataclass(frozen=True)
class LoraStrategyConfig(StrategyConfig):
    """Args:
        r: rank of the adapters.
        lora_alpha: scaling numerator (the update is scaled by lora_alpha / r).
        lora_dropout: dropout on the adapter input.
        target_modules: comma-separated module names or a regex; default: the backbone's choice
            (attention projections for transformers, pointwise convolutions for convnets).
        probe_init: start the head from a linear probe on the frozen features (LP-FT).
    """

    r: int = option(8, "adapter rank", flag="lora-r", min=1)
    lora_alpha: int = option(16, "adapter scaling numerator (updates are scaled by lora_alpha / r)", min=1)
    lora_dropout: float = option(0.05, "dropout on the adapter input", min=0, max=1, max_open=True)
    target_modules: str | None = option(None, "comma-separated module names or a regex (default: the backbone's)")
    probe_init: bool = option(True, "start the head from a linear probe on the frozen features (LP-FT)")


class Lora(Strategy):
    """Freeze the backbone and learn low-rank updates of chosen layers, plus the new head.

    When to use: large backbones, several tasks sharing one backbone, or little memory: a
    fraction of a percent of the parameters train; adapters merge into the weights for export.
    """

    name = "lora"
    config_class = LoraStrategyConfig
    when_to_use = "Large backbones or little memory: low-rank adapters (PEFT) + head, merged at export."
    defaults = {"epochs": 10, "lr": 1e-3, "head": "linear"}

    def prepare(self, model):
        from peft import LoraConfig, get_peft_model  # deferred: PEFT imports transformers

        targets = self.config.target_modules
        if targets and "," in targets:
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        config = LoraConfig(r=self.config.r, lora_alpha=self.config.lora_alpha,
                            lora_dropout=self.config.lora_dropout, bias="none",
                            target_modules=targets or model.backbone.lora_target_modules())
        try:
            model.backbone = get_peft_model(model.backbone, config)
        except ValueError as exc:
            raise ConfigError(f"LoRA could not wrap {model.backbone.name}: {exc} Set --target-modules.") from None
        for p in model.head.parameters():
            p.requires_grad_(True)
        self.unfrozen = []

    def param_groups(self, model):
        lora = [p for n, p in model.backbone.named_parameters() if "lora_" in n and p.requires_grad]
        return [ParamGroup("head", list(model.head.parameters())), ParamGroup("lora", lora)]

    def on_epoch_start(self, model, epoch):
        return []

    def summary(self, model):
        lora = [p for n, p in model.backbone.named_parameters() if "lora_" in n]
        # The adapters sit inside the backbone's layer groups; count them in their own row only.
        rows = summary_rows(model, exclude={id(p) for p in lora})
        rows.append({"group": "lora", "trainable": sum(p.numel() for p in lora if p.requires_grad),
                     "total": sum(p.numel() for p in lora)})
        return rows

    def export_model(self, model):
        """A merged copy: `merge_and_unload` rewrites the model in place, and the run still reads it."""
        if not hasattr(model.backbone, "merge_and_unload"):
            return model
        exported = copy.deepcopy(model)
        exported.backbone = exported.backbone.merge_and_unload()
        return exported
