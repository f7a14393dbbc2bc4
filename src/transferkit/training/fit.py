"""`fit`: a plan (data, backbone, strategy) -> one Lightning training path -> a run folder.

`fit` builds the frozen `Plan` once (training/plan.py), trains as the plan says, and collects what
training returns into `Results`, which the run folder is written from.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
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
from transferkit.errors import TrainingDivergedError
from transferkit.evaluation.metrics import main_metric, task_metrics
from transferkit.loading import run_batches
from transferkit.model import NN_HEADS
from transferkit.runs import Run
from transferkit.strategies import Strategy
from transferkit.training import distributed, domain, features, heads, runfolder
from transferkit.training.checkpointing import AtomicCheckpointIO
from transferkit.training.module import TransferModule
from transferkit.training.plan import Plan, complete_config, frozen_features_of, make_plan
from transferkit.training.quiet import quiet_lightning, run_progress_bar


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

    Raises:
        RunFolderError: `out` is held by another live process, holds another or a finished run, or (resume)
            its saved config or data differ from this run's.
        WeightsFileError: (resume) last.ckpt holds more than weights or is damaged.
        TrainingDivergedError: the training loss or the trained weights became NaN or infinite.
    """
    features.show_progress(progress)  # the feature-extraction bars of this fit
    if strategy is None:
        config, strategy = complete_config(config)
    config = tracking.resolve(config)
    session = Session(Path(config.out or "."), resume, progress, (), tuple(callbacks or ()))
    if not distributed.is_rank_zero():  # rank 0 is the one process of a DDP run that owns the run folder
        train_and_write(make_plan(config, strategy), session, config)
        return None
    # Every refusal comes before the folder is locked or written, so a refused command leaves it as it was.
    # A strategy that chooses from the data is compared with a resumed run once it has chosen (open_run_folder).
    runfolder.check_run_folder(config, resume=resume, compare=not strategy.chooses_from_data)
    plan = make_plan(config, strategy)  # before the folder is written, so bad data leaves no half-made run behind
    record = runfolder.provenance(plan.splits, plan.target)
    if resume:
        runfolder.check_provenance(session.out, record)
        if (last := session.out / "checkpoints" / "last.ckpt").is_file():
            runfolder.read_checkpoint(last)  # a damaged or pickled last.ckpt: one line, before Lightning reads it
    with runfolder.claimed(plan.config, resume=resume, provenance=record) as out:
        loggers = tracking.open_loggers(plan.config, out, version=runfolder.next_log_version(out), resume=resume)
        return train_and_write(plan, replace(session, out=out, loggers=tuple(loggers)), config)


def train_and_write(plan: Plan, session: Session, config: RunConfig):
    """Train as planned; rank 0 evaluates and writes the run folder and returns its `Run` (others None).

    Args:
        config: the config as given (with the tracker resolved), before a choosing strategy chose.
    """
    rank_zero = distributed.is_rank_zero()
    distributed.check_static_schedule(plan.config, plan.strategy, plan.model)
    gap = domain.DomainGap(plan) if plan.target is not None else None  # from the pretrained features
    start = time.perf_counter()
    trained = train_or_explain(plan, session)
    train_seconds = time.perf_counter() - start
    if not rank_zero:
        return None
    out = session.out
    model = plan.strategy.export_model(plan.model)
    check_finite_weights(model, plan.config)  # a diverged model is never saved or reported
    metrics = {split: evaluate_split(plan, model, split, out) for split in plan.nonempty("val", "test")}
    results = Results(metrics, trained.history, train_seconds, trained.head_selection,
                      gap.measure(plan.config, model) if gap is not None else None)
    runfolder.write_results(out, plan, model, results)
    tracking.finish(config, list(session.loggers), out)
    run = Run.load(out)
    if session.progress:
        run.print_summary()
    return run


def train_or_explain(plan: Plan, session: Session) -> Trained:
    """`train`; a divergence after the first checkpoint also says the folder keeps those checkpoints."""
    try:
        return train(plan, session)
    except TrainingDivergedError as exc:
        if not distributed.is_rank_zero() or runfolder.never_started(session.out):
            raise  # the folder is cleared (runfolder.claimed): the same --out takes the corrected run
        raise TrainingDivergedError(f"{exc} {session.out} keeps the checkpoints of the epochs before; "
                                    "fit again into another --out.") from None


def check_finite_weights(model, config: RunConfig) -> None:
    """Refuse a model holding NaN or infinite weights or statistics (TrainingDivergedError)."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        more = ", ..." if len(bad) > 3 else ""
        raise TrainingDivergedError(f"Training diverged: the trained model holds non-finite weights "
                                    f"({', '.join(bad[:3])}{more}); nothing was saved. Lower the learning rate "
                                    f"with --lr (now {config.lr:g}), e.g. ten times lower.")


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


class RunCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that reads the paths it saved relative to its own folder.

    Lightning saves `best_model_path` (and the others) absolute, so a copied or moved run folder would
    go on loading, and reporting, the original folder's best.ckpt. On load, every saved path is moved
    from the saved folder to this one; a path outside the saved folder is dropped, never read.
    """

    @property
    def state_key(self) -> str:  # ModelCheckpoint's key: checkpoints written before this class still restore
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict) -> None:
        saved = os.path.normpath(state_dict.get("dirpath") or self.dirpath)

        def rebase(path: str | None) -> str:
            relative = os.path.relpath(os.path.normpath(path), saved) if path else ""
            if not relative or relative == os.pardir or relative.startswith(os.pardir + os.sep):
                return ""
            return os.path.join(self.dirpath, relative)

        state = {**state_dict, "dirpath": self.dirpath}
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if key in state:
                state[key] = rebase(state[key])
        if "best_k_models" in state:
            state["best_k_models"] = {rebase(k): v for k, v in state["best_k_models"].items() if rebase(k)}
        super().load_state_dict(state)


def trainer_for(plan: Plan, session: Session, *, has_val: bool) -> L.Trainer:
    config, out = plan.config, session.out
    metric, mode = main_metric(config.task)
    monitor = f"val/{metric}" if has_val else None
    # Two callbacks: with a monitor, Lightning refreshes `last` only when the metric improves,
    # and a resume must restart from the last epoch, not the best one.
    best = RunCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor, mode=mode,
                         save_top_k=1, enable_version_counter=False)
    last = RunCheckpoint(dirpath=out / "checkpoints", filename="last", monitor=None, save_top_k=1,
                         enable_version_counter=False)
    bar = session.progress and sys.stdout.isatty()  # piped output gets no bar: an error stays one line
    callbacks = [best, last, *session.callbacks, *([run_progress_bar()] if bar else [])]
    if has_val and config.patience:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=config.patience))
    return L.Trainer(
        max_epochs=config.epochs, **distributed.trainer_placement(config),
        logger=[CSVLogger(out, name="logs", version=runfolder.next_log_version(out)), *session.loggers],
        precision="bf16-mixed" if config.precision == "bf16" else "32-true", callbacks=callbacks,
        # A progress bar only where someone watches: in a pipe or log file it is noise around the one result line.
        enable_progress_bar=bar, enable_model_summary=False, log_every_n_steps=1,
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
        state = runfolder.read_checkpoint(Path(best))
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
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
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
    preds, scores = inference.predict(model, run_batches(cfg, model.backbone, data, train=False), task=cfg.task,
                                      scaling=plan.scaling, precision=cfg.precision)
    runfolder.write_predictions(out / f"predictions_{split}.csv", data, preds, scores)
    return task_metrics(cfg.task, data.targets, preds)
