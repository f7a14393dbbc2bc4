"""Fixtures of the domain-adaptation tests: one thread, a private feature cache, quiet Lightning."""

from __future__ import annotations

import logging

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_private_cache(monkeypatch, tmp_path):
    """Tiny models run fastest on one thread; on a busy machine more threads mostly wait for each other."""
    from threadpoolctl import threadpool_limits

    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)
