"""Tracker tests fit tiny networks, each op far too small to share out between threads."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    """One torch and one BLAS thread (see tests/evaluation/compare_helpers.py for the figures)."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)
