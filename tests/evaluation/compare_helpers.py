"""The grid of the session comparison, shared by the evaluation tests and their conftest."""

from __future__ import annotations

from contextlib import contextmanager

import torch

STRATEGIES = ["feature-extraction", "full", "scratch"]
SIZES = [5, 10]
SEEDS = [0, 1]
#: Fit options every cell shares; small splits keep the 12 cells fast on a CPU.
OPTIONS = dict(data="demo:mnist", model="tiny-cnn", image_size=16, epochs=2, val_fraction=0.05,
               test_fraction=0.05)


@contextmanager
def single_torch_thread():
    """Tiny-cnn's ops are far too small to share out: one thread runs them several times faster on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
