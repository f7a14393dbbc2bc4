"""Keep Lightning's console output to what a transferkit user acts on."""

from __future__ import annotations

import logging
import warnings

_EXPECTED_WARNINGS = (
    r".*does not have many workers.*",  # num_workers=0 is the right choice on small CPU runs
    r".*module\(s\) in eval mode.*",  # frozen BatchNorm layers are in eval mode on purpose
    r".*LeafSpec.*",
    r".*litlogger.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    # Under DDP every process logs the same value for these: validation metrics are computed on the
    # predictions all-gathered from every shard, and the trainable-parameter count is the same model's.
    # Syncing identical values would only add an all-reduce, so Lightning's advice is wrong for them
    # (val/loss and the train losses differ per shard and are logged with sync_dist=True).
    r"It is recommended to use `self.log\('(val/(?!loss')[^']+|train/trainable_params)', \.\.\., sync_dist=True\)`.*",
)


def run_progress_bar():
    """Lightning's progress bar without `v_num` (the CSV log's version, e.g. "mpt1" of "attempt1": not a metric)."""
    from lightning.pytorch.callbacks import TQDMProgressBar  # deferred: imports lightning

    class RunProgressBar(TQDMProgressBar):
        def get_metrics(self, trainer, pl_module):
            items = super().get_metrics(trainer, pl_module)
            items.pop("v_num", None)
            return items

    return RunProgressBar()


def quiet_lightning() -> None:
    """Hide Lightning's banners (GPU/TPU availability, tips) and warnings about intended set-ups."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in _EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
