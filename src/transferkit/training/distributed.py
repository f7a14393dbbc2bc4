"""Training beyond one process: Lightning's DDP across devices and nodes, and which process writes.

Launched directly (`transferkit fit --devices 2`), Lightning starts the other processes itself by
re-running the same command; under torchrun or SLURM every process is started by the launcher and
Lightning reads its rank from the environment. Either way all processes train, and only the
global rank 0 writes the run folder. Frozen-backbone features missing from the cache are extracted
the same way, each process a disjoint part (`extract_sharded`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from transferkit.errors import ConfigError, writing

from transferkit.files import process_tag
from transferkit.inference import forward, use_channels_last
from transferkit.training.features import CACHE_FIX, merge_shards, progress_bar, shard_paths
from transferkit.training.quiet import quiet_lightning

log = logging.getLogger("transferkit")

#: Environment variables that carry a process's global rank, by launcher (torchrun, SLURM, LSF).
_GLOBAL_RANK_VARS = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def global_rank() -> int:
    """This process's global rank from the launcher's environment (0 when not distributed).

    Processes that Lightning starts itself only get LOCAL_RANK and NODE_RANK; the first process of
    each node gets neither, so a node rank above 0 alone marks it as not rank 0.
    """
    for name in _GLOBAL_RANK_VARS:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    node = int(os.environ.get("NODE_RANK", "0") or 0)
    return local if node == 0 else node * 1_000_000 + local  # any positive number means "not 0"


def is_rank_zero() -> bool:
    return global_rank() == 0


def is_distributed(config) -> bool:
    return config.devices * config.num_nodes > 1


def trainer_placement(config) -> dict:
    """The Trainer arguments that say where it trains: accelerator, devices, nodes and strategy.

    Several processes train with DDP (gloo on the CPU, NCCL on GPUs); a single one runs as before.
    `find_unused_parameters` stays off: frozen layers hold no gradients for DDP to wait on, and
    strategies that unfreeze later rebuild nothing DDP tracks (frozen parameters are not registered).
    """
    placement = {"accelerator": config.accelerator, "devices": config.devices, "num_nodes": config.num_nodes}
    if is_distributed(config):
        from lightning.pytorch.strategies import DDPStrategy  # deferred: loads torch.distributed only for DDP

        share_cpu_threads(config)
        placement["strategy"] = DDPStrategy(process_group_backend="gloo" if config.accelerator == "cpu" else None)
    return placement


def share_cpu_threads(config) -> int | None:
    """Give each of the `--devices` CPU processes on this machine its share of the cores.

    Each torch process otherwise takes every core, and N processes then fight over them (on 2 cores,
    2 processes x 2 threads extracted features 2.4x slower than 2 x 1). An `OMP_NUM_THREADS` the
    user set wins, and GPU runs are left alone. Returns the thread count set, or None.
    """
    if config.accelerator == "gpu" or (config.accelerator == "auto" and torch.cuda.is_available()):
        return None
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // config.devices)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
        log.info("%d CPU processes on %d cores: %d torch thread(s) each", config.devices, cores, threads)
    return threads


def check_static_schedule(config, strategy, model) -> None:
    """Refuse DDP for a schedule that unfreezes layers mid-run.

    DDP registers the trainable parameters once, when it wraps the model; layers unfrozen later
    would train on each process's own gradients and drift apart.
    """
    if not is_distributed(config) or strategy.uses_cached_features:
        return
    names = strategy.group_names(model)
    first, last = set(strategy.trainable_at(0, names)), set(strategy.trainable_at(config.epochs - 1, names))
    if first != last:
        raise ConfigError(f"Strategy {config.strategy!r} unfreezes layers during training, which DDP cannot "
                          f"follow (--devices {config.devices}, --num-nodes {config.num_nodes}); train it on one "
                          "device, or use a strategy whose trainable layers stay fixed (e.g. --head-warmup 0).")


def extract_sharded(backbone, loader, out_path: Path, total: int, *, placement: dict, precision: str = "32",
                    desc: str = "features") -> np.ndarray:
    """Frozen-backbone features of `loader`'s `total` samples, each process computing a disjoint part.

    Lightning's distributed prediction: every process predicts the samples `rank::world` (no padding,
    no repeats) on its own device and streams them, with their sample indices, to its shard next to
    `out_path`; global rank 0 then scatters the shards into `out_path` in sample order, so the cache
    file is the one a single process writes. Launched directly, the first call starts the other
    processes (by re-running the command, as training does) and later calls reuse them; all of them
    must reach this call, and the cache folder must be shared between machines.

    Args:
        placement: fresh Trainer arguments from `trainer_placement` (accelerator, devices, nodes, strategy).

    Returns:
        The merged features, memory-mapped, in every process.
    """
    quiet_lightning()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    device = next(backbone.parameters()).device
    trainer = L.Trainer(**placement, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=out_path.parent,
                        callbacks=[_ShardWriter(out_path, total, desc)])
    trainer.predict(_FeatureModule(backbone, precision), loader, return_predictions=False)
    backbone.to(device)  # Lightning left it on this process's accelerator
    trainer.strategy.barrier()  # every shard is on disk
    problem = None
    if trainer.is_global_zero:
        try:
            merge_shards(out_path, total, backbone.num_features, trainer.world_size)
        except Exception as error:  # raised below in every process, so that none waits for rank 0 forever
            problem = error
    problem = trainer.strategy.broadcast(problem)
    if problem is not None:
        raise problem
    return np.load(out_path, mmap_mode="r")


class _FeatureModule(L.LightningModule):
    """The frozen backbone as a predict step: (sample indices, float32 features) per batch."""

    def __init__(self, backbone, precision: str):
        super().__init__()
        self.backbone = backbone
        self.feature_precision = precision
        self.nhwc = False

    def on_predict_start(self) -> None:
        self.nhwc = use_channels_last(self.backbone)

    def on_predict_end(self) -> None:
        if self.nhwc:
            use_channels_last(self.backbone, enable=False)

    def predict_step(self, batch, batch_idx):
        inputs, _, index = batch
        return index, forward(self.backbone, inputs, nhwc=self.nhwc, precision=self.feature_precision)


class _ShardWriter(BasePredictionWriter):
    """Appends each batch's rows and sample indices to this process's shard, renamed into place at the end.

    The rows file is renamed last, so its presence marks a complete shard.
    """

    def __init__(self, out_path: Path, total: int, desc: str):
        super().__init__(write_interval="batch")
        self.out_path, self.total, self.desc = out_path, total, desc
        self.paths: tuple[Path, ...] = ()
        self.files: list = []
        self.count = 0
        self.bar = None

    def _partial(self, path: Path) -> Path:
        return path.with_name(f"{path.name}.{process_tag()}.tmp")  # see remove_stale_temporaries

    def on_predict_start(self, trainer, pl_module) -> None:
        rows, index = shard_paths(self.out_path, trainer.global_rank, trainer.world_size)
        self.paths = (index, rows)
        with writing(self.out_path.parent, CACHE_FIX):  # a full or read-only cache: one line naming it
            self.files = [open(self._partial(path), "wb") for path in self.paths]  # closed in _close
        self.count = 0
        if trainer.is_global_zero:
            self.bar = progress_bar(total=len(range(0, self.total, trainer.world_size)), unit="sample",
                                    desc=f"{self.desc} (rank 0 of {trainer.world_size})")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        index, feats = prediction
        with writing(self.out_path.parent, CACHE_FIX):
            self.files[0].write(index.cpu().numpy().astype(np.int64).tobytes())
            self.files[1].write(feats.cpu().numpy().astype(np.float32).tobytes())
        self.count += len(index)
        if self.bar is not None:
            self.bar.update(len(index))

    def on_predict_end(self, trainer, pl_module) -> None:
        self._close()
        for path in self.paths:
            os.replace(self._partial(path), path)
        log.info("%s: rank %d of %d extracted %d of %d samples", self.desc, trainer.global_rank,
                 trainer.world_size, self.count, self.total)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()
        for path in self.paths:
            self._partial(path).unlink(missing_ok=True)

    def _close(self) -> None:
        for file in self.files:
            file.close()
        self.files = []
        if self.bar is not None:
            self.bar.close()
            self.bar = None
