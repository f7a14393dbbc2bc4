"""`transferkit tune`: an Optuna search over fit options that prunes, stores its study, and resumes."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import optuna
import pandas as pd
import pytest

import transferkit
from transferkit.errors import ConfigError, RunFolderError, UnknownNameError
from transferkit.workflows.tune import PruneOnValidation, tune

FAST = dict(model="tiny-cnn", image_size=16, epochs=2, patience=0)


@pytest.fixture(scope="module")
def study(tmp_path_factory, color_images):
    folder = tmp_path_factory.mktemp("tune") / "search"
    result = tune(data=str(color_images), out=folder, trials=3, strategies="full,l2sp,gradual", **FAST)
    return folder, result


def test_tune_runs_the_trials_and_keeps_the_best(study):
    folder, result = study
    assert (folder / "study.db").is_file() and result.storage == f"sqlite:///{(folder / 'study.db').resolve()}"
    table = pd.read_csv(folder / "trials.csv")
    assert len(table) == 3 and set(table["state"]) <= {"COMPLETE", "PRUNED"}
    assert set(result.best_params) >= {"strategy", "lr"} and 1e-5 <= result.best_params["lr"] <= 1e-2
    best = transferkit.load_run(result.best_run)
    assert best.metrics["val"]["accuracy"] == pytest.approx(result.best_value)
    assert best.config.strategy == result.best_params["strategy"]
    assert best.config.lr == pytest.approx(result.best_params["lr"])
    for name in ("alpha", "unfreeze_every", "layer_decay"):  # tuned exactly where the strategy has the option
        if name in result.best_params:
            assert best.config.strategy_options[name] == pytest.approx(result.best_params[name])


def test_tune_refuses_other_settings_into_the_same_folder(study, color_images):
    folder, first = study
    with pytest.raises(RunFolderError) as refused:
        tune(data=str(color_images), out=folder, trials=4, strategies="full,l2sp", **{**FAST, "epochs": 3})
    message = str(refused.value)
    assert "epochs: 2 there, 3 now" in message and "strategies: ['full', 'l2sp', 'gradual'] there" in message
    assert message.endswith("use another --out.") and "\n" not in message
    assert len(optuna.load_study(study_name=first.study_name, storage=first.storage).trials) == 3  # untouched


def test_tune_refuses_changed_data_and_a_folder_that_is_not_a_tune_folder(color_images, fe_image_run, tmp_path,
                                                                           capsys):
    data = Path(shutil.copytree(color_images, tmp_path / "colors"))
    settings = dict(out=tmp_path / "t", trials=1, strategies="full", progress=False, **{**FAST, "epochs": 1})
    tune(data=str(data), **settings)
    assert "trial 0" not in capsys.readouterr().err  # progress=False: no bar, no trial lines
    shutil.copyfile(data / "red" / "0.png", data / "blue" / "0.png")  # same path, other content
    with pytest.raises(RunFolderError, match=r"holds a tune study with other settings \(data content changed"):
        tune(data=str(data), **settings)
    with pytest.raises(RunFolderError, match="already holds other files .* is not a tune folder; use another --out"):
        tune(data=str(data), **{**settings, "out": fe_image_run})
    assert not (fe_image_run / "study.db").exists()


def test_tune_refuses_a_folder_another_tune_holds(color_images, tmp_path):
    folder = tmp_path / "busy"
    folder.mkdir()
    note = {"pid": 4242, "host": socket.gethostname(), "what": "tune", "started": "2026-01-01 00:00:00 UTC"}
    (folder / ".lock").write_text(json.dumps(note))
    with open(folder / ".lock") as held:  # an OS lock on the file, as a live tune process holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunFolderError, match=r"busy is in use by PID 4242 \(tune, started 2026-01-01 "
                                                 r"00:00:00 UTC\); wait for it or use another --out"):
            tune(data=str(color_images), out=folder, trials=1, strategies="full", **FAST)
    assert not (folder / "study.db").exists()


class CtrlCInTrial(L.Callback):
    """Raises KeyboardInterrupt, as Ctrl-C does, in the first epoch of the `at`-th trial (0-based)."""

    def __init__(self, at: int):
        self.at, self.fits = at, 0

    def on_train_start(self, trainer, pl_module):
        self.fits += 1

    def on_train_batch_end(self, trainer, pl_module, *args):
        if self.fits == self.at + 1:
            raise KeyboardInterrupt


def _finished(folder: Path) -> list:
    study = optuna.load_study(study_name=folder.name, storage=f"sqlite:///{folder.resolve() / 'study.db'}")
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


@pytest.fixture
def default_sigint():
    """Python's own Ctrl-C handler for the test, also where the runner starts it with SIGINT ignored (`cmd &`)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_study_cut_off_by_ctrl_c_resumes_to_the_parameters_of_an_uninterrupted_one(color_images, tmp_path,
                                                                                      default_sigint):
    settings = dict(data=str(color_images), trials=4, strategies="full,l2sp,gradual", progress=False, **FAST)
    tune(out=tmp_path / "whole", **settings)
    with pytest.raises(KeyboardInterrupt):
        tune(out=tmp_path / "cut", callbacks=[CtrlCInTrial(at=2)], **settings)
    cut = tmp_path / "cut"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Lightning's SIG_IGN undone
    assert not (cut / ".lock").exists() and len(pd.read_csv(cut / "trials.csv")) == 3
    stopped = optuna.load_study(study_name="cut", storage=f"sqlite:///{cut / 'study.db'}").trials[2]
    assert stopped.state.name == "FAIL" and stopped.user_attrs["interrupted"] is True

    tune(out=cut, **settings)  # the same call continues the study
    trials = optuna.load_study(study_name="cut", storage=f"sqlite:///{cut / 'study.db'}").trials
    retry = trials[3]
    assert retry.user_attrs["retry_of"] == 2 and retry.params == stopped.params
    assert not (cut / "trials" / "trial-002").exists()  # the cut-off half run is gone; its retry has its own
    resumed = [json.dumps(t.params, sort_keys=True) for t in _finished(cut)]
    assert len(resumed) == 4 and len(set(resumed)) == 4  # N trials, no parameter set tried twice
    # Exactly the uninterrupted study's parameters, in order: 4 trials lie in TPE's random start-up,
    # where a draw depends on (seed, finished trials) only, not on the scores.
    assert resumed == [json.dumps(t.params, sort_keys=True) for t in _finished(tmp_path / "whole")]
    tune(out=cut, **settings)  # resuming a finished study retries nothing and adds no trial
    assert len(optuna.load_study(study_name="cut", storage=f"sqlite:///{cut / 'study.db'}").trials) == 5


KILLED_TUNE = textwrap.dedent("""
    import sys
    from transferkit.workflows.tune import tune

    tune(data=sys.argv[1], out=sys.argv[2], trials=2, strategies="full,l2sp", progress=False,
         model="tiny-cnn", image_size=16, epochs=3, patience=0)
""")


def test_a_killed_tune_is_resumed_retrying_its_running_trial_once(color_images, tmp_path, caplog):
    folder = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", KILLED_TUNE, str(color_images), str(folder)], env=env)
    try:
        deadline = time.monotonic() + 240
        while not (folder / "trials" / "trial-001").exists() and process.poll() is None:
            assert time.monotonic() < deadline, "the tune subprocess never reached its second trial"
            time.sleep(0.05)
    finally:
        process.kill()  # SIGKILL: no clean-up at all, the lock file and a RUNNING trial stay behind
        process.wait()
    running = [t for t in optuna.load_study(study_name="killed", storage=f"sqlite:///{folder / 'study.db'}").trials
               if t.state.name == "RUNNING"]
    assert len(running) == 1 and (folder / ".lock").is_file()
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        tune(data=str(color_images), out=folder, trials=2, strategies="full,l2sp", progress=False,
             **{**FAST, "epochs": 3})
    assert f"Trial {running[0].number} was interrupted" in caplog.text and "stale lock" in caplog.text
    trials = optuna.load_study(study_name="killed", storage=f"sqlite:///{folder / 'study.db'}").trials
    retries = [t for t in trials if t.user_attrs.get("retry_of") == running[0].number]
    assert len(retries) == 1 and retries[0].params == running[0].params
    finished = [json.dumps(t.params, sort_keys=True) for t in _finished(folder)]
    assert len(finished) == 2 and len(set(finished)) == 2
    assert not (folder / ".lock").exists()


class _Trial:
    """The part of optuna.Trial the pruning callback uses; prunes at `prune_at`."""

    def __init__(self, prune_at: int):
        self.prune_at, self.reports = prune_at, []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return len(self.reports) > self.prune_at


def test_pruning_callback_stops_a_trial_after_the_reported_epoch(color_images, tmp_path):
    trial = _Trial(prune_at=1)
    with pytest.raises(optuna.TrialPruned, match="epoch 1: val/accuracy="):
        transferkit.fit(data=str(color_images), strategy="full", out=str(tmp_path / "run"), progress=False,
                        callbacks=[PruneOnValidation(trial, "val/accuracy")], **{**FAST, "epochs": 4})
    assert [step for step, _ in trial.reports] == [0, 1]
    assert all(0 <= value <= 1 for _, value in trial.reports)


def test_tune_option_errors(color_images, tmp_path):
    with pytest.raises(UnknownNameError, match="l2-sp"):
        tune(data=str(color_images), out=tmp_path / "a", trials=1, strategies="full,l2-sp", **FAST)
    with pytest.raises(ConfigError, match="--lr-range must be two positive numbers, low before high, got 0.1,0.001"):
        tune(data=str(color_images), out=tmp_path / "b", trials=1, lr_range="0.1,0.001", **FAST)


def test_cli_tune_prints_the_best_trial(cli, terminal, color_images, tmp_path):
    result = cli("tune", "--data", color_images, "--model", "tiny-cnn", "--image-size", 16, "--epochs", 1,
                 "--trials", 2, "--strategies", "full", "--out", tmp_path / "t")
    assert result.code == 0, result
    assert "Best val score" in result.out and "strategy=full" in result.out
    assert (tmp_path / "t" / "trials" / "trial-000" / "metrics.json").is_file()
    # One overall bar with an ETA on stderr, one line per trial, and Optuna's own lines not repeating them.
    assert "tune: 100%" in result.err and "2/2 [" in result.err and "trial/s]" in result.err
    lines = result.err.replace("\r", "\n").splitlines()
    for number in (0, 1):
        assert sum(line.startswith(f"trial {number}: complete") for line in lines) == 1, result.err
    assert "Trial 0 finished" not in result.err and "tune:" not in result.out


def test_public_functions_are_not_shadowed_by_their_modules():
    import transferkit.workflows.export
    import transferkit.workflows.tune  # noqa: F401  (importing a submodule sets a package attribute of its name)

    assert transferkit.tune is transferkit.api.tune and transferkit.export is transferkit.api.export
