"""`tune`: search learning rate, strategy and its options with Optuna, pruning bad trials early.

Each trial is an ordinary `fit` into OUT/trials/trial-NNN. Trials that fine-tune report their
validation score after every epoch, and Optuna's pruner stops the ones that fall behind. The study
lives in OUT/study.db (SQLite) unless `storage` names another Optuna storage URL; calling `tune`
again with the same OUT continues the search, retrying a trial that was cut off mid-way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import lightning as L

from transferkit.errors import ConfigError

log = logging.getLogger("transferkit")

#: Strategy options tuned when the strategy has them: (kind, low, high); "log" samples log-uniformly.
SEARCH_SPACE: dict[str, tuple[str, float, float]] = {
    "unfreeze_every": ("int", 1, 3),
    "alpha": ("log", 1e-4, 1.0),
    "layer_decay": ("float", 0.5, 1.0),
    "backbone_lr_scale": ("log", 0.01, 1.0),
    "freeze": ("float", 0.2, 0.8),
}
DEFAULT_STRATEGIES = "full,l2sp,gradual"


@dataclass(frozen=True)
class TuneResult:
    """The finished search.

    Attributes:
        folder: the tune folder (study.db, trials/, trials.csv).
        storage: the Optuna storage URL of the study.
        study_name: the study's name in that storage.
        best_value: the best trial's validation score.
        best_params: its learning rate, strategy and strategy options.
        best_run: its run folder (a normal transferkit run).
        trials: one row per trial (number, state, value, params, run folder).
    """

    folder: Path
    storage: str
    study_name: str
    best_value: float
    best_params: dict[str, Any]
    best_run: Path
    trials: Any


class PruneOnValidation(L.Callback):
    """Reports the monitored validation metric to an Optuna trial each epoch; raises TrialPruned when told."""

    def __init__(self, trial, monitor: str):
        self.trial = trial
        self.monitor = monitor

    def on_validation_end(self, trainer, pl_module) -> None:
        import optuna

        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {trainer.current_epoch}: {self.monitor}={float(value):.4f}")


def tune(config=None, *, out: str | Path, trials: int = 20, strategies: str | list[str] = DEFAULT_STRATEGIES,
         lr_range: tuple[float, float] = (1e-5, 1e-2), storage: str | None = None, study_name: str | None = None,
         timeout: float | None = None, seed: int = 0, **options: Any) -> TuneResult:
    """Search hyperparameters of `fit` with Optuna (TPE sampler, median pruner) on the validation score.

    Args:
        config: a RunConfig or YAML file, as `fit` takes; `options` override it.
        out: the tune folder; trials are run folders under OUT/trials.
        trials: how many trials the study should hold when done (finished and pruned ones count).
        strategies: the strategies to choose from (comma-separated or a list).
        lr_range: the learning rate's (low, high), sampled log-uniformly.
        storage: an Optuna storage URL (default: sqlite:///OUT/study.db).
        study_name: the study's name in the storage (default: the tune folder's name).
        timeout: stop starting new trials after this many seconds.
        seed: the sampler's seed (and every trial's `seed` unless `options` sets one).
        **options: every other `fit` option, passed to each trial.

    Returns:
        A TuneResult with the best trial and the table of all trials (also OUT/trials.csv).

    Example:
        result = transferkit.tune(data="demo:mnist", model="efficientnet_lite0", image_size=64,
                                  train_per_class=20, epochs=5, trials=20, out="runs/tune-mnist")
        result.best_params, result.best_run
    """
    import optuna
    from optuna.trial import TrialState

    from transferkit.options import build_config
    from transferkit.evaluation.metrics import main_metric

    names = _strategies(strategies)
    low, high = _lr_range(lr_range)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    base = build_config(config, out=str(folder / "trials" / "pending"), seed=options.pop("seed", seed), **options)
    metric, mode = main_metric(base.task)
    storage = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    study = optuna.create_study(
        study_name=study_name or folder.resolve().name, storage=storage, load_if_exists=True,
        direction="maximize" if mode == "max" else "minimize", sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    _retry_interrupted(study)
    objective = _objective(base, folder, names, (low, high), metric)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))  # not failed ones
    remaining = trials - len(done)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, timeout=timeout, catch=())
    return _result(study, folder, storage)


def _objective(base, folder: Path, names: list[str], lr_range, metric: str):
    from transferkit.strategies import get_strategy_class
    from transferkit.training.fit import fit

    def objective(trial) -> float:
        strategy = trial.suggest_categorical("strategy", names)
        lr = trial.suggest_float("lr", *lr_range, log=True)
        allowed = {f.name for f in fields(get_strategy_class(strategy).config_class)}
        fixed = {k: v for k, v in base.strategy_options.items() if k in allowed}  # given by the user: not tuned
        strategy_options = {name: _suggest(trial, name, *space) for name, space in SEARCH_SPACE.items()
                            if name in allowed and name not in fixed}
        strategy_options.update(fixed)
        run_folder = folder / "trials" / f"trial-{trial.number:03d}"
        trial.set_user_attr("run", str(run_folder))
        config = base.replace(strategy=strategy, lr=lr, strategy_options=strategy_options, out=str(run_folder))
        run = fit(config, progress=False, callbacks=[PruneOnValidation(trial, f"val/{metric}")])
        if "val" not in run.metrics:
            raise ConfigError("tune scores trials on the validation split; set --val-fraction above 0.")
        return float(run.metrics["val"][metric])

    return objective


def _suggest(trial, name: str, kind: str, low: float, high: float):
    if kind == "int":
        return trial.suggest_int(name, int(low), int(high))
    return trial.suggest_float(name, low, high, log=kind == "log")


def _retry_interrupted(study) -> None:
    """Mark trials left RUNNING by an interrupted search as failed and queue their parameters again."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=False)
        log.warning("Trial %d was interrupted; it runs again with the same parameters.", trial.number)


def _result(study, folder: Path, storage: str) -> TuneResult:
    from optuna.trial import TrialState

    from transferkit.config import atomic_write_text

    table = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    atomic_write_text(folder / "trials.csv", table.to_csv(index=False))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"No trial of the study in {folder} finished (all were pruned or failed); "
                          "run more --trials or widen the search.")
    best = study.best_trial
    return TuneResult(folder, storage, study.study_name, best.value, dict(best.params), Path(best.user_attrs["run"]),
                      table)


def _strategies(strategies) -> list[str]:
    from transferkit.strategies import get_strategy_class

    names = [s.strip() for s in strategies.split(",")] if isinstance(strategies, str) else list(strategies)
    if not names or not all(names):
        raise ConfigError("--strategies needs at least one strategy name, e.g. full,l2sp,gradual.")
    for name in names:
        get_strategy_class(name)  # UnknownNameError with close matches
    return names


def _lr_range(lr_range) -> tuple[float, float]:
    if isinstance(lr_range, str):
        lr_range = [float(v) for v in lr_range.split(",")]
    low, high = (float(v) for v in lr_range)
    if not 0 < low < high:
        raise ConfigError(f"--lr-range must be two positive numbers, low before high, got {low:g},{high:g}.")
    return low, high
