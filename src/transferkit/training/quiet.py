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
)


def quiet_lightning() -> None:
    """Hide Lightning's banners (GPU/TPU availability, tips) and warnings about intended set-ups."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in _EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
