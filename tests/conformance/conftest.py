"""Fixtures of the strategy conformance suite; the helpers live in conformance_helpers.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conformance_helpers import Trained, make_batches, make_model, strategy_for, train_briefly, write_image_folder


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; on a busy machine more threads mostly wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """A private feature cache per test, and Lightning's banners out of the test output."""
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "cache"))
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


_TRAINED: dict[tuple, Trained] = {}


@pytest.fixture
def trained():
    """`trained(strategy, backbone, start_mode="train", **options)`: a cached short training, shared by tests."""

    def get(strategy: str, backbone: str, start_mode: str = "train", **options) -> Trained:
        key = (strategy, backbone, start_mode, tuple(sorted(options.items())))
        if key not in _TRAINED:
            strat = strategy_for(strategy, **options)
            _TRAINED[key] = train_briefly(make_model(backbone), strat,
                                          make_batches(backbone, target_domain=strat.needs_target_data),
                                          start_mode=start_mode)
        return _TRAINED[key]

    return get


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images") / "shapes")


