"""Tracker tests fit tiny networks; see tests/evaluation/compare_helpers.py for the one-thread rationale."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny-cnn's ops are too small to share out between threads on a busy CPU
    yield
    torch.set_num_threads(threads)
