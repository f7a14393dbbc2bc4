"""`fit`: a plan (data, backbone, strategy) -> one Lightning training path -> a run folder.

`fit` builds the frozen `Plan` once (training/plan.py), trains as the plan says, and collects what
training returns into `Results`, which the run folder is written from.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from transferkit import inference, tracking
from transferkit.config import RunConfig
from transferkit.data import SourceTargetLoader
from transferkit.data.loaders import SeededShuffle
from transferkit.evaluation.metrics import main_metric, task_metrics
from transferkit.loading import run_batches
from transferkit.model import NN_HEADS
from transferkit.runs import Run
from transferkit.strategies import Strategy
from transferkit.training import distributed, domain, features, heads, runfolder
from transferkit.training.checkpointing import AtomicCheckpointIO
from transferkit.training.module import TransferModule
from transferkit.training.plan import Plan, complete_config, frozen_features_of, make_plan
from transferkit.training.quiet import quiet_lightning


@dataclass(frozen=True)
class Session:
    """Where and how this attempt trains: what may differ between an attempt and its resume, unlike the plan."""

    out: Path
    resume: bool = False
    progress: bool = True
    loggers: tuple = ()  # the tracker's Lightning loggers, besides the CSV log
    callbacks: tuple = ()  # extra Lightning callbacks (tune's pruning)


@dataclass(frozen=True)
class Trained:
    """What training returns: the per-epoch history and, for a scikit-learn head or probe, its chosen strength."""

    history: list[dict]
    head_selection: dict | None = None


@dataclass(frozen=True)
class Results:
    """A finished run's results, written to metrics.json (with the plan's description of the run)."""

    metrics: dict[str, dict[str, float]]
    history: list[dict]
    train_seconds: float
    head_selection: dict | None = None
    domain_gap: dict | None = field(default=None)


def fit(config: RunConfig, *, strategy: Strategy | None = None, resume: bool = False, progress: bool = True,
        callbacks: list | None = None):
    """Fit `config` and write its run folder; returns the loaded `Run` (None in DDP processes but rank 0).

    Args:
        config: the run's options.
        strategy: the strategy `complete_config` built, when `config` is already completed by it (compare
            completes every cell before the first trains); None: completed here.
        resume: continue the interrupted run in `config.out`.
        progress: show progress bars and print the summary.
        callbacks: extra Lightning callbacks (tune's pruning).
    """
    features.show_progress(progress)  # the feature-extraction bars of this fit
    if strategy is None:
        config, strategy = complete_config(config)
    config = tracking.resolve(config)
    rank_zero = distributed.is_rank_zero()  # the one process of a DDP run that writes the run folder
    # A strategy that chooses from the data is compared with a resumed run once it has chosen (open_run_folder).
    if rank_zero:
        runfolder.check_run_folder(config, resume=resume, compare=not strategy.chooses_from_data)
    plan = make_plan(config, strategy)  # before the folder is made, so bad data leaves no half-made run behind
    distributed.check_static_schedule(plan.config, plan.strategy, plan.model)
    out = runfolder.open_run_folder(plan.config, resume=resume) if rank_zero else Path(plan.config.out)
    loggers = ()
    if rank_zero:
        loggers = tuple(tracking.open_loggers(plan.config, out, version=runfolder.next_log_version(out),
                                              resume=resume))
    session = Session(out, resume, progress, loggers, tuple(callbacks or ()))
    gap = domain.DomainGap(plan) if plan.target is not None else None  # from the pretrained features
    start = time.perf_counter()
    trained = train(plan, session)
    train_seconds = time.perf_counter() - start
    if not rank_zero:
        return None
    model = plan.strategy.export_model(plan.model)
    metrics = {split: evaluate_split(plan, model, split, out) for split in plan.nonempty("val", "test")}
    results = Results(metrics, trained.history, train_seconds, trained.head_selection,
                      gap.measure(plan.config, model) if gap is not None else None)
    runfolder.write_results(out, plan, model, results)
    tracking.finish(config, list(loggers), out)
    run = Run.load(out)
    if progress:
        run.print_summary()
    return run


def train(plan: Plan, session: Session) -> Trained:
    """Train as the plan says: a head on cached features, or end to end (from a probe-fitted head if asked)."""
    if plan.strategy.uses_cached_features:
        return train_on_features(plan, session)
    selection = None
    probe = plan.strategy.probe_head(plan.config.task, plan.config.head)
    if probe is not None and not session.resume:
        selection = heads.fit_selected_head(plan, frozen_features_of(plan, "train", "val"), kind=probe,
                                            options=plan.strategy.head_options())
    return Trained(train_end_to_end(plan, session), selection)


def trainer_for(plan: Plan, session: Session, *, has_val: bool) -> L.Trainer:
    config, out = plan.config, session.out
    metric, mode = main_metric(config.task)
    monitor = f"val/{metric}" if has_val else None
    # Two callbacks: with a monitor, Lightning refreshes `last` only when the metric improves,
    # and a resume must restart from the last epoch, not the best one.
    best = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor, mode=mode,
                           save_top_k=1, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)
    callbacks = [best, last, *session.callbacks]
    if has_val and config.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=config.patience))
    return L.Trainer(
        max_epochs=config.epochs, **distributed.trainer_placement(config),
        logger=[CSVLogger(out, name="logs", version=runfolder.next_log_version(out)), *session.loggers],
        precision="bf16-mixed" if config.precision == "bf16" else "32-true", callbacks=callbacks,
        # Bars only on a terminal, as the feature bars: in a log or pipe they are lines around a one-line error.
        enable_progress_bar=session.progress and sys.stdout.isatty(), enable_model_summary=False, log_every_n_steps=1,
        num_sanity_val_steps=0, deterministic=False, plugins=[AtomicCheckpointIO()],
    )


def run_lightning(plan: Plan, session: Session, train_loader, val_loader, *, features_input: bool) -> list[dict]:
    """The one training loop (Lightning's); returns the per-epoch history. The best checkpoint is loaded after."""
    quiet_lightning()
    cfg, out = plan.config, session.out
    module = TransferModule(plan.model, plan.strategy, task=cfg.task, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            total_steps=cfg.epochs * len(train_loader), features_input=features_input,
                            scaling=plan.scaling)
    trainer = trainer_for(plan, session, has_val=val_loader is not None)
    last = out / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if session.resume and last.is_file() else None
    plan.model.train()  # feature passes leave it in eval; Lightning keeps whatever mode it finds
    fit_interruptibly(trainer, module, train_loader, val_loader, ckpt_path)
    best = trainer.checkpoint_callback.best_model_path or str(last)  # the first callback: "best"
    if best and Path(best).is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)
        plan.strategy.load_state_dict(state.get("transferkit_strategy", {}), plan.model)
        module.load_state_dict(state["state_dict"])
    module.cpu()
    return runfolder.read_history(out)


def fit_interruptibly(trainer: L.Trainer, module, train_loader, val_loader, ckpt_path: str | None) -> None:
    """`trainer.fit`, with Ctrl-C raised as KeyboardInterrupt again.

    Lightning turns Ctrl-C into `sys.exit(1)` after saving nothing more and ignores further Ctrl-C;
    the caller must see an interruption (the CLI says how to resume, exit 130), not a finished fit.
    """
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


def train_end_to_end(plan: Plan, session: Session) -> list[dict]:
    backbone = plan.model.backbone
    train_loader = run_batches(plan.config, backbone, plan.splits["train"], train=True)
    if plan.strategy.needs_target_data:
        train_loader = SourceTargetLoader(train_loader, run_batches(plan.config, backbone, plan.target, train=True))
    val = plan.splits["val"]
    val_loader = run_batches(plan.config, backbone, val, train=False) if len(val) else None
    return run_lightning(plan, session, train_loader, val_loader, features_input=False)


def train_on_features(plan: Plan, session: Session) -> Trained:
    """Feature extraction: features computed once (cached), then a head fitted on them."""
    feats = frozen_features_of(plan, "train", "val")
    if plan.config.head not in NN_HEADS:
        if not distributed.is_rank_zero():  # the other processes only shared the extraction
            return Trained([])
        selection = heads.fit_selected_head(plan, feats, kind=plan.config.head, options=plan.strategy.head_options())
        history = heads.sklearn_history(plan, feats)
        tracking.log_history(list(session.loggers), history)
        return Trained(history, selection)

    def tensor_loader(split: str, shuffle: bool):
        data = plan.splits[split]
        ds = TensorDataset(torch.from_numpy(np.array(feats[split])), torch.as_tensor(data.targets),
                           torch.arange(len(data)))
        return DataLoader(ds, batch_size=plan.config.batch_size,
                          sampler=SeededShuffle(ds, plan.config.seed) if shuffle else None)

    val_loader = tensor_loader("val", False) if "val" in feats else None
    return Trained(run_lightning(plan, session, tensor_loader("train", True), val_loader, features_input=True))


def evaluate_split(plan: Plan, model, split: str, out: Path) -> dict[str, float]:
    """Metrics of `model` on a split; its predictions are written to predictions_<split>.csv."""
    data, cfg = plan.splits[split], plan.config
    preds, _ = inference.predict(model, run_batches(cfg, model.backbone, data, train=False), task=cfg.task,
                                 scaling=plan.scaling, precision=cfg.precision)
    runfolder.write_predictions(out / f"predictions_{split}.csv", data, preds)
    return task_metrics(cfg.task, data.targets, preds)
