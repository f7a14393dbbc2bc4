"""Progress output says what a user acts on: no `v_num` on the bar, no DDP advice that is wrong for our logs."""

from __future__ import annotations

import sys
import warnings

import pytest
from lightning.pytorch.utilities.warnings import PossibleUserWarning

import transferkit
from transferkit.training.quiet import quiet_lightning


def test_the_training_bar_shows_no_v_num(tmp_path, color_images, capfd, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # the bar is drawn on terminals only
    transferkit.fit(data=str(color_images), model="tiny-cnn", strategy="full", epochs=1, image_size=16,
                    out=str(tmp_path / "run"), progress=True)
    out, err = capfd.readouterr()
    assert "train/loss" in out + err  # the bar was drawn, with the metrics it shows
    assert "v_num" not in out + err


def _lightning_advice(name: str) -> str:
    return (f"It is recommended to use `self.log({name!r}, ..., sync_dist=True)` when logging on epoch level in "
            "distributed setting to accumulate the metric across devices.")


@pytest.mark.parametrize(("name", "shown"), [("val/accuracy", False), ("val/macro_f1", False),
                                             ("train/trainable_params", False), ("val/loss", True),
                                             ("train/task_loss", True)])
def test_only_the_sync_dist_advice_for_identical_values_is_silenced(name, shown):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_lightning()
        warnings.warn(_lightning_advice(name), PossibleUserWarning)
    assert bool(caught) is shown
