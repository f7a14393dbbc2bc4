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
def single_thread():
    """One torch and one BLAS thread: these tests' ops are far too small to share out.

    On a busy CPU, threads waiting for each other make them slow: a dot product of 12,810 floats took
    8 ms with OpenBLAS's 2 threads and 0.002 ms with one, so a logistic-regression head took minutes.
    """
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)
