"""The one LightningModule: task loss + strategy hooks; every strategy trains through it."""

from __future__ import annotations

from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from transferkit.errors import TrainingDivergedError
from transferkit.evaluation.metrics import task_metrics
from transferkit.inference import channels_last_inputs, use_channels_last
from transferkit.model import TargetScaling
from transferkit.training import optim


class Batch(NamedTuple):
    """A training batch: the data loaders' (inputs, targets, sample index), plus, for a strategy that
    `needs_target_data`, the inputs of a batch of unlabeled target-domain samples."""

    inputs: Any
    targets: torch.Tensor
    index: torch.Tensor
    target_inputs: Any = None


class TransferModule(L.LightningModule):
    """Trains `model` (a TransferModel) as `strategy` says.

    Args:
        model: backbone + head.
        strategy: supplies parameter groups, the unfreezing schedule and extra loss terms.
        task: "classification" or "regression" (targets standardised with `scaling`).
        lr: base learning rate (the head's); groups scale it.
        weight_decay: AdamW weight decay unless a group overrides it.
        total_steps: optimisation steps of the whole run, for the cosine schedule.
        features_input: batches hold cached backbone features instead of raw inputs.
        scaling: the regression-target standardisation (identity for classification).
    """

    def __init__(self, model, strategy, *, task: str, lr: float, weight_decay: float, total_steps: int,
                 features_input: bool = False, scaling: TargetScaling = TargetScaling()):
        super().__init__()
        self.model = model
        self.strategy = strategy
        self.task = task
        self.lr = lr
        self.weight_decay = weight_decay
        self.total_steps = total_steps
        self.features_input = features_input
        self.scaling = scaling
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._channels_last = False

    def forward(self, inputs) -> dict[str, torch.Tensor]:
        if self.features_input:
            return {"logits": self.model.head(inputs), "features": inputs}
        if self._channels_last:
            inputs = channels_last_inputs(inputs)
        logits, features = self.model.forward_with_features(inputs)
        return {"logits": logits, "features": features}

    def task_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return F.cross_entropy(logits.float(), targets)
        return F.mse_loss(logits.float().squeeze(-1), self.scaling.standardise(targets.float()))

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return logits.argmax(-1)
        return self.scaling.restore(logits.float().squeeze(-1))

    def training_step(self, batch, batch_idx):
        batch = Batch(*batch)
        targets = batch.targets
        self.strategy.on_train_step(self.global_step, self.total_steps)
        outputs = self(batch.inputs)
        if batch.target_inputs is not None:
            outputs["target_domain_features"] = self(batch.target_inputs)["features"]
        loss = self.task_loss(outputs["logits"], targets)
        batch_size = len(targets)
        self.log("train/task_loss", loss, on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True)
        for name, term in self.strategy.extra_loss(self.model, batch, outputs).items():
            self.log(f"train/{name}", term, on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True)
            loss = loss + term
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size,
                 sync_dist=True)
        if not torch.isfinite(loss):  # stop at once: every later step, checkpoint and metric would be NaN
            raise TrainingDivergedError.at(epoch=self.current_epoch, step=self.global_step,
                                           loss=float(loss.detach()), lr=self.lr)
        return loss

    def validation_step(self, batch, batch_idx):
        inputs, targets = batch[0], batch[1]
        logits = self(inputs)["logits"]
        self.log("val/loss", self.task_loss(logits, targets), on_epoch=True, batch_size=len(targets),
                 sync_dist=True)
        self._val_outputs.append((self.predictions(logits).cpu(), targets.cpu()))

    def on_validation_epoch_end(self):
        if not self._val_outputs:
            return
        preds = torch.cat([p for p, _ in self._val_outputs])
        targets = torch.cat([t for _, t in self._val_outputs])
        self._val_outputs.clear()
        if self.trainer.world_size > 1:  # each DDP process saw its shard; every one scores the whole set
            preds, targets = (self.all_gather(t).flatten(0, 1).cpu() for t in (preds, targets))
        preds, targets = preds.numpy(), targets.numpy()
        for name, value in task_metrics(self.task, targets, preds).items():
            self.log(f"val/{name}", float(np.nan_to_num(value)), prog_bar=name in ("accuracy", "rmse"))

    def configure_optimizers(self):
        optimizer = optim.build_optimizer(self.strategy.param_groups(self.model), self.lr, self.weight_decay)
        scheduler = optim.WarmupCosine(optimizer, self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_start(self):
        # Parameters change layout in place, so the optimizer built before this still holds them.
        # Left out under DDP, whose gradient buckets are laid out for the layout they were built with.
        if not self.features_input and self.trainer.world_size == 1:
            self._channels_last = use_channels_last(self.model)

    def on_fit_end(self):
        if self._channels_last:  # the saved and reloaded weights keep the usual layout
            use_channels_last(self.model, enable=False)
            self._channels_last = False

    def on_train_start(self):
        self.model.train()  # groups re-unfrozen by a resume need the BatchNorm rule applied again

    def on_train_epoch_start(self):
        new_groups = self.strategy.on_epoch_start(self.model, self.current_epoch)
        if new_groups:
            scheduler = self.lr_schedulers()
            optim.add_param_groups(self.optimizers().optimizer, new_groups, self.lr, self.weight_decay, scheduler)
        # Lightning trains in whatever mode it finds the model (a probe's feature pass leaves it in eval,
        # a fresh one has every BatchNorm in train); train() applies the frozen-BatchNorm rule to both.
        self.model.train()
        self.log("train/trainable_params", float(sum(p.numel() for p in self.model.parameters() if p.requires_grad)),
                 on_step=False, on_epoch=True)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["transferkit_strategy"] = self.strategy.state_dict()

    def on_load_checkpoint(self, checkpoint):
        self.strategy.load_state_dict(checkpoint.get("transferkit_strategy", {}), self.model)
