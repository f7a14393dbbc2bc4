"""`transferkit tune`: an Optuna search over fit options that prunes, stores its study, and resumes."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest

import transferkit
from transferkit.errors import ConfigError, UnknownNameError
from transferkit.tuning import PruneOnValidation, tune

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


def test_tune_resumes_the_study_and_retries_an_interrupted_trial(study, color_images):
    folder, first = study
    stored = optuna.load_study(study_name=first.study_name, storage=first.storage)
    cut_off = stored.ask()  # a trial left RUNNING, as a killed search leaves it
    cut_off.suggest_categorical("strategy", ["full", "l2sp", "gradual"])
    cut_off.suggest_float("lr", 1e-5, 1e-2, log=True)
    result = tune(data=str(color_images), out=folder, trials=4, strategies="full,l2sp,gradual", **FAST)
    trials = optuna.load_study(study_name=first.study_name, storage=first.storage).trials
    states = [t.state.name for t in trials]
    assert len(trials) == 5 and states[3] == "FAIL" and states[4] in ("COMPLETE", "PRUNED")
    assert trials[4].params["lr"] == pytest.approx(cut_off.params["lr"])  # the same parameters, run again
    assert len(pd.read_csv(folder / "trials.csv")) == 5 and result.best_value >= first.best_value


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


def test_cli_tune_prints_the_best_trial(cli, color_images, tmp_path):
    result = cli("tune", "--data", color_images, "--model", "tiny-cnn", "--image-size", 16, "--epochs", 1,
                 "--trials", 1, "--strategies", "full", "--out", tmp_path / "t")
    assert result.code == 0, result
    assert "Best val score" in result.out and "strategy=full" in result.out
    assert (tmp_path / "t" / "trials" / "trial-000" / "metrics.json").is_file()


def test_public_functions_are_not_shadowed_by_their_modules():
    import transferkit.exporting
    import transferkit.tuning  # noqa: F401  (importing a submodule sets a package attribute of its name)

    assert transferkit.tune is transferkit.api.tune and transferkit.export is transferkit.api.export
