"""DDP: `fit --devices 2 --accelerator cpu` trains in two gloo processes that stay in step; rank 0 writes the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch

import transferkit
from transferkit.errors import ConfigError
from transferkit.training import distributed

DRIVER = textwrap.dedent('''
    import sys
    from pathlib import Path

    import lightning as L
    import torch

    import transferkit

    data, out, dumps = sys.argv[1:4]
    original_fit = L.Trainer.fit

    def fit_and_dump(self, module, *args, **kwargs):
        """Each process saves its weights as training ends, before the best checkpoint is reloaded."""
        original_fit(self, module, *args, **kwargs)
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        torch.save(state, Path(dumps) / f"rank{self.global_rank}-of-{self.world_size}.pt")

    L.Trainer.fit = fit_and_dump
    if __name__ == "__main__":
        transferkit.fit(data=data, model="tiny-cnn", strategy="full", epochs=3, image_size=16, batch_size=8,
                        lr=0.1, patience=0, seed=0, devices=2, accelerator="cpu", out=out, progress=False)
''')

COMMON = dict(model="tiny-cnn", strategy="full", epochs=3, image_size=16, lr=0.1, patience=0, seed=0,
              progress=False)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, color_images):
    """A two-process CPU run launched the way a user launches it (Lightning starts rank 1 itself)."""
    root = tmp_path_factory.mktemp("ddp")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run([sys.executable, str(driver), str(color_images), str(root / "run"), str(root)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def test_both_ranks_end_with_identical_weights(ddp_run):
    ranks = [torch.load(ddp_run / f"rank{r}-of-2.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    initial = transferkit.create_backbone("tiny-cnn").state_dict()
    moved = [n for n, v in initial.items() if not torch.equal(ranks[0][f"model.backbone.{n}"], v)]
    assert moved, "the backbone did not train"


def test_rank_zero_alone_writes_the_run_folder(ddp_run):
    run = transferkit.load_run(ddp_run / "run")
    assert run.config.devices == 2 and run.config.accelerator == "cpu"
    assert len(list((ddp_run / "run" / "logs").glob("attempt*"))) == 1
    assert len(pd.read_csv(ddp_run / "run" / "history.csv")) == 3


def test_ddp_metrics_match_one_process_with_the_same_global_batch(ddp_run, color_images, tmp_path):
    single = transferkit.fit(data=str(color_images), batch_size=16, out=str(tmp_path / "single"), **COMMON)
    ddp = json.loads((ddp_run / "run" / "metrics.json").read_text())
    assert ddp["test"]["accuracy"] == pytest.approx(single.metrics["test"]["accuracy"], abs=0.1)
    # Trained until the loss halves, so accuracy is no coin toss (with near-uniform outputs an argmax
    # flips on noise); the two runs see the same data shuffled into other batches, so losses differ a little.
    ddp_loss = pd.read_csv(ddp_run / "run" / "history.csv")["val/loss"]
    single_loss = pd.read_csv(single.folder / "history.csv")["val/loss"]
    assert ddp_loss.iloc[-1] < 0.5 * ddp_loss.iloc[0] and single_loss.iloc[-1] < 0.5 * single_loss.iloc[0]
    assert ddp_loss.iloc[-1] == pytest.approx(single_loss.iloc[-1], abs=0.05)


def test_a_schedule_that_unfreezes_mid_run_is_refused_under_ddp(color_images, tmp_path):
    with pytest.raises(ConfigError, match="unfreezes layers during training, which DDP cannot follow"):
        transferkit.fit(data=str(color_images), model="tiny-cnn", strategy="gradual", epochs=4, image_size=16,
                        devices=2, accelerator="cpu", out=str(tmp_path / "gradual"), progress=False)
    assert not (tmp_path / "gradual").exists()


@pytest.mark.parametrize("env, rank", [({}, 0), ({"LOCAL_RANK": "1"}, 1), ({"RANK": "3", "LOCAL_RANK": "1"}, 3),
                                       ({"SLURM_PROCID": "2"}, 2), ({"NODE_RANK": "1"}, 1_000_000)])
def test_global_rank_reads_each_launcher(monkeypatch, env, rank):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert distributed.global_rank() == rank
    assert distributed.is_rank_zero() == (rank == 0)


def test_bad_placement_options_are_refused():
    with pytest.raises(ConfigError, match="Unknown accelerator 'tpu'. Choose one of: auto, cpu, gpu"):
        transferkit.build_config(data="x", model="tiny-cnn", accelerator="tpu")
    with pytest.raises(ConfigError, match="--devices must be a positive integer, got 0"):
        transferkit.build_config(data="x", model="tiny-cnn", devices=0)


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cpu_processes_share_the_cores_unless_the_user_set_threads(monkeypatch, restore_threads):
    from transferkit.config import RunConfig

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(cores)
    distributed.trainer_placement(RunConfig(data="d", model="tiny-cnn", devices=1, accelerator="cpu"))
    assert torch.get_num_threads() == cores  # one process keeps every core
    distributed.trainer_placement(RunConfig(data="d", model="tiny-cnn", devices=2, accelerator="cpu"))
    assert torch.get_num_threads() == max(1, cores // 2)
    assert distributed.share_cpu_threads(RunConfig(data="d", model="tiny-cnn", devices=4 * cores, accelerator="cpu")) == 1
    assert distributed.share_cpu_threads(RunConfig(data="d", model="tiny-cnn", devices=2, accelerator="gpu")) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    torch.set_num_threads(3)
    distributed.trainer_placement(RunConfig(data="d", model="tiny-cnn", devices=2, accelerator="cpu"))
    assert torch.get_num_threads() == 3
