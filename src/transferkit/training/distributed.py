"""Training beyond one process: Lightning's DDP across devices and nodes, and which process writes.

Launched directly (`transferkit fit --devices 2`), Lightning starts the other processes itself by
re-running the same command; under torchrun or SLURM every process is started by the launcher and
Lightning reads its rank from the environment. Either way all processes train, and only the
global rank 0 writes the run folder.
"""

from __future__ import annotations

import os

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
        from lightning.pytorch.strategies import DDPStrategy

        placement["strategy"] = DDPStrategy(process_group_backend="gloo" if config.accelerator == "cpu" else None)
    return placement


def check_static_schedule(config, strategy, model) -> None:
    """Refuse DDP for a schedule that unfreezes layers mid-run.

    DDP registers the trainable parameters once, when it wraps the model; layers unfrozen later
    would train on each process's own gradients and drift apart.
    """
    from transferkit.errors import ConfigError

    if not is_distributed(config) or strategy.uses_cached_features:
        return
    names = strategy.group_names(model)
    first, last = set(strategy.trainable_at(0, names)), set(strategy.trainable_at(config.epochs - 1, names))
    if first != last:
        raise ConfigError(f"Strategy {config.strategy!r} unfreezes layers during training, which DDP cannot "
                          f"follow (--devices {config.devices}, --num-nodes {config.num_nodes}); train it on one "
                          "device, or use a strategy whose trainable layers stay fixed (e.g. --head-warmup 0).")
