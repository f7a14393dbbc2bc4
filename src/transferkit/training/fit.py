"""`fit`: data -> backbone -> strategy -> one Lightning training path -> a run folder."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from transferkit.backbones import create_backbone
from transferkit.config import RunConfig
from transferkit.errors import ConfigError
from transferkit.strategies import create_strategy
from transferkit.training import heads, runfolder
from transferkit.training.features import autocast, cached_features
from transferkit.training.model import NN_HEADS, TransferModel, make_head

log = logging.getLogger("transferkit")


@dataclass
class Prepared:
    """Everything built before training: resolved config, splits, model and strategy."""

    config: RunConfig
    splits: dict
    model: TransferModel
    strategy: Any
    target_stats: tuple[float, float]


def resolve_config(config: RunConfig) -> RunConfig:
    """Fill epochs, lr and head from the strategy's defaults and validate its options."""
    strategy = create_strategy(config.strategy, config.strategy_options)
    defaults = dict(strategy.defaults)
    if config.task == "regression" and defaults["head"] == "logistic":
        defaults["head"] = "ridge"
    head = config.head or defaults["head"]
    if head not in NN_HEADS and not strategy.uses_cached_features:
        raise ConfigError(f"--head {head} fits on cached features only; use --strategy feature-extraction "
                          f"or one of: {', '.join(NN_HEADS)}.")
    heads.check_head(head, config.task)
    return config.replace(epochs=config.epochs or defaults["epochs"], lr=config.lr or defaults["lr"], head=head,
                          strategy_options=strategy.config.to_dict())


def load_splits(config: RunConfig) -> dict:
    from transferkit.data import load_data, make_splits

    common = dict(task=config.task, text_column=config.text_column, image_column=config.image_column,
                  label_column=config.label_column, skip_bad_files=config.skip_bad_files)
    parts = load_data(config.data, **common)
    test = None
    if config.test_data:
        test = next(iter(load_data(config.test_data, **common).values()))
    return make_splits(parts, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                       seed=config.seed, train_per_class=config.train_per_class, test_data=test)


def prepare(config: RunConfig) -> Prepared:
    """Load data, build the backbone and head, and let the strategy validate and prepare them."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    splits = load_splits(config)
    train = splits["train"]
    strategy = create_strategy(config.strategy, config.strategy_options)
    backbone = create_backbone(config.model, pretrained=strategy.uses_pretrained, weights=config.weights,
                               max_length=config.max_length)
    if backbone.data_spec.modality != train.modality:
        raise ConfigError(f"Backbone {config.model!r} reads {backbone.data_spec.modality} but {config.data} "
                          f"holds {train.modality}; pick a {train.modality} backbone (see `transferkit models`).")
    outputs = len(train.classes) if config.task == "classification" else 1
    head_kind = config.head if config.head in NN_HEADS else "linear"
    model = TransferModel(backbone, make_head(head_kind, backbone.num_features, outputs))
    strategy.validate(model, splits)
    strategy.prepare(model)
    stats = (0.0, 1.0)
    if config.task == "regression":
        stats = (float(train.targets.mean()), float(train.targets.std() or 1.0))
    return Prepared(config, splits, model, strategy, stats)


def loader_for(prep: Prepared, data, *, train: bool, backbone=None):
    from transferkit.data import make_loader

    backbone = backbone or prep.model.backbone
    cfg = prep.config
    tokenize = backbone.tokenize if backbone.data_spec.modality == "text" else None
    return make_loader(data, spec=backbone.data_spec, tokenize=tokenize, image_size=cfg.image_size,
                       batch_size=cfg.batch_size, train=train, augment=cfg.augment if train else "none",
                       max_length=cfg.max_length, num_workers=cfg.num_workers, seed=cfg.seed)


def fit(config: RunConfig, *, resume: bool = False, progress: bool = True):
    """Fit `config` and write its run folder; returns the loaded `Run`."""
    from transferkit.runs import Run

    config = resolve_config(config)
    runfolder.check_run_folder(config, resume=resume)
    prep = prepare(config)  # before the folder is made, so bad data leaves no half-made run behind
    out = runfolder.open_run_folder(config, resume=resume)
    start = time.perf_counter()
    if prep.strategy.uses_cached_features:
        history = train_on_features(prep, out, resume=resume, progress=progress)
    else:
        if prep.strategy.probe_init() and prep.config.head == "linear" and not resume:
            kind = "logistic" if prep.config.task == "classification" else "ridge"
            heads.fit_sklearn_head(prep, split_features(prep, prep.splits["train"], "train"),
                                   prep.splits["train"].targets, kind=kind)
        history = train_end_to_end(prep, out, resume=resume, progress=progress)
    train_seconds = time.perf_counter() - start
    model = prep.strategy.export_model(prep.model)
    metrics = {split: evaluate_split(prep, model, prep.splits[split], split, out)
               for split in ("val", "test") if len(prep.splits[split])}
    runfolder.write_results(out, prep, model, metrics, history, train_seconds)
    run = Run.load(out)
    if progress:
        run.print_summary()
    return run


def trainer_for(prep: Prepared, out: Path, *, progress: bool, has_val: bool, epochs: int) -> L.Trainer:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from transferkit.evaluation.metrics import main_metric

    metric, mode = main_metric(prep.config.task)
    monitor = f"val/{metric}" if has_val else None
    # Two callbacks: with a monitor, Lightning refreshes `last` only when the metric improves,
    # and a resume must restart from the last epoch, not the best one.
    best = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor, mode=mode,
                           save_top_k=1, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)
    callbacks = [best, last]
    if has_val and prep.config.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=prep.config.patience))
    return L.Trainer(
        max_epochs=epochs, accelerator="auto", devices=1,
        logger=CSVLogger(out, name="logs", version=runfolder.next_log_version(out)),
        precision="bf16-mixed" if prep.config.precision == "bf16" else "32-true", callbacks=callbacks,
        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=1,
        num_sanity_val_steps=0, deterministic=False,
    )


def run_lightning(prep: Prepared, out: Path, train_loader, val_loader, *, features_input: bool,
                  resume: bool, progress: bool) -> list[dict]:
    from transferkit.training.module import TransferModule
    from transferkit.training.quiet import quiet_lightning

    quiet_lightning()
    cfg = prep.config
    module = TransferModule(prep.model, prep.strategy, task=cfg.task, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            total_steps=cfg.epochs * len(train_loader), features_input=features_input,
                            target_stats=prep.target_stats)
    trainer = trainer_for(prep, out, progress=progress, has_val=val_loader is not None, epochs=cfg.epochs)
    last = out / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    prep.model.train()  # feature passes leave it in eval; Lightning keeps whatever mode it finds
    trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    best = trainer.checkpoint_callback.best_model_path or str(last)  # the first callback: "best"
    if best and Path(best).is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)
        prep.strategy.load_state_dict(state.get("transferkit_strategy", {}), prep.model)
        module.load_state_dict(state["state_dict"])
    module.cpu()
    return runfolder.read_history(out)


def train_end_to_end(prep: Prepared, out: Path, *, resume: bool, progress: bool) -> list[dict]:
    train_loader = loader_for(prep, prep.splits["train"], train=True)
    val = prep.splits["val"]
    val_loader = loader_for(prep, val, train=False) if len(val) else None
    return run_lightning(prep, out, train_loader, val_loader, features_input=False, resume=resume, progress=progress)


def split_features(prep: Prepared, data, name: str) -> np.ndarray:
    cfg = prep.config
    feats, _ = cached_features(
        prep.model.backbone, data, lambda d: loader_for(prep, d, train=False), image_size=cfg.image_size,
        max_length=cfg.max_length, weights=cfg.weights, precision=cfg.precision, desc=f"features {name}")
    return np.asarray(feats)


def train_on_features(prep: Prepared, out: Path, *, resume: bool, progress: bool) -> list[dict]:
    """Feature extraction: features computed once (cached), then a head fitted on them."""
    feats = {s: split_features(prep, prep.splits[s], s) for s in ("train", "val") if len(prep.splits[s])}
    train = prep.splits["train"]
    if prep.config.head not in NN_HEADS:
        heads.fit_sklearn_head(prep, feats["train"], train.targets,
                               standardize=getattr(prep.strategy.config, "standardize", False))
        return heads.sklearn_history(prep, feats, out)
    from torch.utils.data import DataLoader, TensorDataset

    def tensor_loader(split: str, shuffle: bool):
        data = prep.splits[split]
        targets = torch.as_tensor(data.targets)
        ds = TensorDataset(torch.from_numpy(np.array(feats[split])), targets, torch.arange(len(data)))
        return DataLoader(ds, batch_size=prep.config.batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(prep.config.seed))

    val_loader = tensor_loader("val", False) if "val" in feats else None
    return run_lightning(prep, out, tensor_loader("train", True), val_loader, features_input=True,
                         resume=resume, progress=progress)


@torch.inference_mode()
def predict_outputs(model, loader, *, task: str, precision: str = "32",
                    target_stats=(0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, scores): class indices + probabilities, or regression values + values."""
    model.eval()
    preds, scores = [], []
    for inputs, _, _ in loader:
        with autocast(precision):
            logits = model(inputs).float()
        if task == "classification":
            probs = logits.softmax(-1)
            preds.append(probs.argmax(-1).numpy())
            scores.append(probs.numpy())
        else:
            values = logits.squeeze(-1).numpy() * target_stats[1] + target_stats[0]
            preds.append(values)
            scores.append(values[:, None])
    return np.concatenate(preds), np.concatenate(scores)


def evaluate_split(prep: Prepared, model, data, split: str, out: Path) -> dict[str, float]:
    from transferkit.evaluation.metrics import task_metrics

    loader = loader_for(prep, data, train=False, backbone=model.backbone)
    preds, _ = predict_outputs(model, loader, task=prep.config.task, precision=prep.config.precision,
                               target_stats=prep.target_stats)
    runfolder.write_predictions(out / f"predictions_{split}.csv", data, preds)
    return task_metrics(prep.config.task, data.targets, preds)
