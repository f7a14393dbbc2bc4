"""`fit`: data -> backbone -> strategy -> one Lightning training path -> a run folder."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from transferkit.backbones import create_backbone
from transferkit.config import RunConfig
from transferkit.errors import ConfigError
from transferkit.strategies import create_strategy, get_strategy_class
from transferkit.strategies.base import ResolveContext, StrategyChoice
from transferkit.training import distributed, domain, heads, runfolder
from transferkit.training.features import autocast, cached_features, channels_last, channels_last_inputs
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
    loggers: list = field(default_factory=list)  # the tracker's Lightning loggers, besides the CSV log
    callbacks: list = field(default_factory=list)  # extra Lightning callbacks (tune's pruning)
    choice: StrategyChoice | None = None  # set when the configured strategy chose another from the data
    head_selection: dict | None = None  # the scikit-learn head's chosen strength (feature extraction, probe)
    target: Any = None  # unlabeled target-domain LabeledData (--target-data), else None
    domain_gap: dict | None = None  # proxy A-distance between the domains before and after training


def resolve_config(config: RunConfig) -> RunConfig:
    """Fill epochs, lr and head from the strategy's defaults and validate its options.

    A strategy that chooses another from the data leaves them to the one it chooses (`prepare`).
    """
    strategy = create_strategy(config.strategy, config.strategy_options)
    domain.check_target_data(config, strategy)
    if strategy.resolves_from_data:
        return config.replace(strategy_options=strategy.config.to_dict())
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
    backbone = build_backbone(config, strategy, train.modality)
    config, strategy, backbone, choice = resolve_strategy(config, strategy, splits, backbone)
    outputs = len(train.classes) if config.task == "classification" else 1
    head_kind = config.head if config.head in NN_HEADS else "linear"
    model = TransferModel(backbone, make_head(head_kind, backbone.num_features, outputs))
    strategy.validate(model, splits)
    strategy.prepare(model)
    stats = (0.0, 1.0)
    if config.task == "regression":
        stats = (float(train.targets.mean()), float(train.targets.std() or 1.0))
    target = None
    if config.target_data:
        domain.warn_if_unused(config, strategy)
        target = domain.load_target_data(config, train.modality)
    return Prepared(config, splits, model, strategy, stats, choice=choice, target=target)


def build_backbone(config: RunConfig, strategy, modality: str):
    backbone = create_backbone(config.model, pretrained=strategy.uses_pretrained, weights=config.weights,
                               max_length=config.max_length)
    if backbone.data_spec.modality != modality:
        raise ConfigError(f"Backbone {config.model!r} reads {backbone.data_spec.modality} but {config.data} "
                          f"holds {modality}; pick a {modality} backbone (see `transferkit models`).")
    return backbone


def resolve_strategy(config: RunConfig, strategy, splits: dict, backbone):
    """Let the strategy choose the one to train with from the data; returns (config, strategy, backbone, choice).

    The returned config names the chosen strategy with its defaults filled in, so the run folder
    saves (and a resume reuses) the strategy that actually trains.
    """
    context = ResolveContext(config, splits, backbone,
                             features=lambda split: frozen_features(config, backbone, splits[split], split),
                             step_seconds=lambda: step_seconds(config, backbone, splits["train"]))
    choice = strategy.resolve(context)
    if choice is None:
        return config, strategy, backbone, None
    if get_strategy_class(choice.strategy).resolves_from_data:
        raise ConfigError(f"Strategy {config.strategy!r} chose {choice.strategy!r}, which chooses again; "
                          "it must choose a strategy that trains.")
    config = resolve_config(config.replace(strategy=choice.strategy, strategy_options=choice.options))
    chosen = create_strategy(config.strategy, config.strategy_options)
    if chosen.uses_pretrained != strategy.uses_pretrained:
        backbone = build_backbone(config, chosen, splits["train"].modality)
    return config, chosen, backbone, choice


def loader_for(prep: Prepared, data, *, train: bool, backbone=None):
    return data_loader(prep.config, backbone or prep.model.backbone, data, train=train)


def data_loader(cfg: RunConfig, backbone, data, *, train: bool):
    """Batches of `data` prepared for `backbone` as `cfg` says (augmented when `train`)."""
    from transferkit.data import make_loader

    tokenize = backbone.tokenize if backbone.data_spec.modality == "text" else None
    return make_loader(data, spec=backbone.data_spec, tokenize=tokenize, image_size=cfg.image_size,
                       batch_size=cfg.batch_size, train=train, augment=cfg.augment if train else "none",
                       max_length=cfg.max_length, num_workers=cfg.num_workers, seed=cfg.seed)


def fit(config: RunConfig, *, resume: bool = False, progress: bool = True, callbacks: list | None = None):
    """Fit `config` and write its run folder; returns the loaded `Run` (None in DDP processes but rank 0)."""
    from transferkit import tracking
    from transferkit.runs import Run

    config = tracking.resolve(resolve_config(config))
    rank_zero = distributed.is_rank_zero()  # the one process of a DDP run that writes the run folder
    # A strategy that chooses from the data is compared with a resumed run once it has chosen (open_run_folder).
    if rank_zero:
        runfolder.check_run_folder(config, resume=resume,
                                   compare=not get_strategy_class(config.strategy).resolves_from_data)
    prep = prepare(config)  # before the folder is made, so bad data leaves no half-made run behind
    config = prep.config
    distributed.check_static_schedule(config, prep.strategy, prep.model)
    prep.callbacks = list(callbacks or [])
    out = runfolder.open_run_folder(config, resume=resume) if rank_zero else Path(config.out)
    if rank_zero:
        prep.loggers = tracking.open_loggers(config, out, version=runfolder.next_log_version(out), resume=resume)
    gap = domain.DomainGap(prep) if prep.target is not None else None  # from the pretrained features
    start = time.perf_counter()
    if prep.strategy.uses_cached_features:
        history = train_on_features(prep, out, resume=resume, progress=progress)
    else:
        if prep.strategy.probe_init() and prep.config.head == "linear" and not resume:
            kind = "logistic" if prep.config.task == "classification" else "ridge"
            feats = {s: split_features(prep, prep.splits[s], s) for s in ("train", "val") if len(prep.splits[s])}
            prep.head_selection = heads.fit_selected_head(prep, feats, kind=kind)
        history = train_end_to_end(prep, out, resume=resume, progress=progress)
    train_seconds = time.perf_counter() - start
    if not rank_zero:
        return None
    model = prep.strategy.export_model(prep.model)
    metrics = {split: evaluate_split(prep, model, prep.splits[split], split, out)
               for split in ("val", "test") if len(prep.splits[split])}
    if gap is not None:
        prep.domain_gap = gap.measure(prep.config, model)
    runfolder.write_results(out, prep, model, metrics, history, train_seconds)
    tracking.finish(config, prep.loggers, out)
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
    callbacks = [best, last, *prep.callbacks]
    if has_val and prep.config.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=prep.config.patience))
    return L.Trainer(
        max_epochs=epochs, **distributed.trainer_placement(prep.config),
        logger=[CSVLogger(out, name="logs", version=runfolder.next_log_version(out)), *prep.loggers],
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
    from transferkit.data import SourceTargetLoader

    train_loader = loader_for(prep, prep.splits["train"], train=True)
    if prep.strategy.needs_target_data:
        train_loader = SourceTargetLoader(train_loader, loader_for(prep, prep.target, train=True))
    val = prep.splits["val"]
    val_loader = loader_for(prep, val, train=False) if len(val) else None
    return run_lightning(prep, out, train_loader, val_loader, features_input=False, resume=resume, progress=progress)


def split_features(prep: Prepared, data, name: str) -> np.ndarray:
    return frozen_features(prep.config, prep.model.backbone, data, name)


def frozen_features(cfg: RunConfig, backbone, data, name: str = "data") -> np.ndarray:
    """Features of `data` from the frozen `backbone`, read from the on-disk cache or computed into it."""
    feats, _ = cached_features(
        backbone, data, lambda d: data_loader(cfg, backbone, d, train=False), image_size=cfg.image_size,
        max_length=cfg.max_length, weights=cfg.weights, precision=cfg.precision, desc=f"features {name}",
        cache_dir=Path(cfg.feature_cache) if cfg.feature_cache else None,
        placement=distributed.trainer_placement(cfg))  # several processes share the extraction
    return np.asarray(feats)


def step_seconds(cfg: RunConfig, backbone, data, samples: int = 8) -> float:
    """Seconds per sample of a forward and backward pass through `backbone` (best of two batches).

    Run in eval mode so that BatchNorm statistics stay as they are; gradients are cleared after.
    """
    inputs = next(iter(data_loader(cfg.replace(batch_size=samples), backbone, data, train=False)))[0]
    backbone.eval()
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        with torch.enable_grad(), autocast(cfg.precision):
            backbone(inputs).float().sum().backward()
        best = min(best, time.perf_counter() - start)
    backbone.zero_grad(set_to_none=True)
    return best / min(samples, len(data))


def train_on_features(prep: Prepared, out: Path, *, resume: bool, progress: bool) -> list[dict]:
    """Feature extraction: features computed once (cached), then a head fitted on them."""
    feats = {s: split_features(prep, prep.splits[s], s) for s in ("train", "val") if len(prep.splits[s])}
    train = prep.splits["train"]
    if prep.config.head not in NN_HEADS:
        from transferkit.tracking import log_history

        if not distributed.is_rank_zero():  # the other processes only shared the extraction
            return []
        prep.head_selection = heads.fit_selected_head(
            prep, feats, standardize=getattr(prep.strategy.config, "standardize", False))
        history = heads.sklearn_history(prep, feats, out)
        log_history(prep.loggers, history)
        return history
    from torch.utils.data import DataLoader, TensorDataset

    from transferkit.data.loaders import SeededShuffle

    def tensor_loader(split: str, shuffle: bool):
        data = prep.splits[split]
        targets = torch.as_tensor(data.targets)
        ds = TensorDataset(torch.from_numpy(np.array(feats[split])), targets, torch.arange(len(data)))
        return DataLoader(ds, batch_size=prep.config.batch_size,
                          sampler=SeededShuffle(ds, prep.config.seed) if shuffle else None)

    val_loader = tensor_loader("val", False) if "val" in feats else None
    return run_lightning(prep, out, tensor_loader("train", True), val_loader, features_input=True,
                         resume=resume, progress=progress)


@torch.inference_mode()
def predict_outputs(model, loader, *, task: str, precision: str = "32",
                    target_stats=(0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, scores): class indices + probabilities, or regression values + values."""
    model.eval()
    preds, scores = [], []
    with channels_last(model) as nhwc:
        batches = [model_outputs(model, channels_last_inputs(x) if nhwc else x, precision) for x, _, _ in loader]
    for logits in batches:
        if task == "classification":
            probs = logits.softmax(-1)
            preds.append(probs.argmax(-1).numpy())
            scores.append(probs.numpy())
        else:
            values = logits.squeeze(-1).numpy() * target_stats[1] + target_stats[0]
            preds.append(values)
            scores.append(values[:, None])
    return np.concatenate(preds), np.concatenate(scores)


def model_outputs(model, inputs, precision: str) -> torch.Tensor:
    with autocast(precision):
        return model(inputs).float()


def evaluate_split(prep: Prepared, model, data, split: str, out: Path) -> dict[str, float]:
    from transferkit.evaluation.metrics import task_metrics

    loader = loader_for(prep, data, train=False, backbone=model.backbone)
    preds, _ = predict_outputs(model, loader, task=prep.config.task, precision=prep.config.precision,
                               target_stats=prep.target_stats)
    runfolder.write_predictions(out / f"predictions_{split}.csv", data, preds)
    return task_metrics(prep.config.task, data.targets, preds)
