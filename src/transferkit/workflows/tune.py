"""`tune`: search learning rate, strategy and its options with Optuna, pruning bad trials early.

Each trial is an ordinary `fit` into OUT/trials/trial-NNN. Trials that fine-tune report their
validation score after every epoch, and Optuna's pruner stops the ones that fall behind. The study
lives in OUT/study.db (SQLite) unless `storage` names another Optuna storage URL; calling `tune`
again with the same OUT and settings continues the search: a trial cut off by Ctrl-C or a kill runs
again with its parameters, and the trials after it draw what an uninterrupted search would have
drawn (`TrialSeededSampler`), so no parameter set is tried twice. The study records its settings
(data fingerprint, model, epochs, strategies, search space, ...); other settings into the same OUT
are refused. One process at a time works in OUT (`transferkit.locks.hold_lock`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import optuna
from optuna.trial import TrialState

from transferkit.data import load_data
from transferkit.errors import ConfigError, RunFolderError
from transferkit.evaluation.metrics import main_metric
from transferkit.files import atomic_write_text
from transferkit.locks import LOCK_FILE, hold_lock
from transferkit.options import build_config
from transferkit.strategies import get_strategy_class, search_space
from transferkit.training.fit import fit
from transferkit.workflows.progress import overall_bar

log = logging.getLogger("transferkit")

#: Strategy options tuned when the strategy has them: (kind, low, high); "log" samples log-uniformly.
#: {option: (kind, low, high)}, declared by the strategies' option fields.
SEARCH_SPACE: dict[str, tuple[str, float, float]] = search_space()
DEFAULT_STRATEGIES = "full,l2sp,gradual"
SETTINGS_ATTR = "transferkit_settings"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: Options that change where a trial writes or how fast it runs, never its score: free to differ on resume.
_NOT_SETTINGS = ("out", "num_workers", "feature_cache", "tracker", "tracking_uri", "experiment")
_TUNE_FILES = {"study.db", "study.db-journal", "study.db-wal", "study.db-shm", "trials", "trials.csv", LOCK_FILE}


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
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {trainer.current_epoch}: {self.monitor}={float(value):.4f}")


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Optuna's TPE sampler whose random draws for a trial depend only on (seed, trials finished before it).

    A sampler keeps one random stream from the seed it was built with, so a resumed study (a new
    sampler) replays the first trials' draws: a 4-trial search cut off after 2 tried 2 parameter sets
    twice. Here each trial gets a fresh TPE seeded from (seed, number of finished trials): a resumed
    sequential study asks what the uninterrupted one asked at the same point, never an earlier draw.
    Interrupted (failed) trials do not count, and TPE reads only finished ones, as does the pruner.
    """

    def __init__(self, seed: int = 0, **tpe_options: Any):
        self._seed, self._tpe_options = seed, tpe_options
        self._tpe = self._seeded(0)

    def _seeded(self, finished: int) -> optuna.samplers.TPESampler:
        state = np.random.SeedSequence([self._seed % 2**32, finished]).generate_state(1)[0]
        return optuna.samplers.TPESampler(seed=int(state), **self._tpe_options)

    def before_trial(self, study, trial) -> None:
        self._tpe = self._seeded(len(study.get_trials(deepcopy=False, states=_FINISHED)))
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()


def tune(config=None, *, out: str | Path, trials: int = 20, strategies: str | list[str] = DEFAULT_STRATEGIES,
         lr_range: tuple[float, float] = (1e-5, 1e-2), storage: str | None = None, study_name: str | None = None,
         timeout: float | None = None, seed: int = 0, progress: bool = True, callbacks: list | None = None,
         **options: Any) -> TuneResult:
    """Search hyperparameters of `fit` with Optuna (TPE sampler, median pruner) on the validation score.

    Args:
        config: a RunConfig or YAML file, as `fit` takes; `options` override it.
        out: the tune folder; trials are run folders under OUT/trials. Re-running with the same
            OUT and settings continues the study; other settings are refused.
        trials: how many trials the study should hold when done (finished and pruned ones count).
        strategies: the strategies to choose from (comma-separated or a list).
        lr_range: the learning rate's (low, high), sampled log-uniformly.
        storage: an Optuna storage URL (default: sqlite:///OUT/study.db).
        study_name: the study's name in the storage (default: the tune folder's name).
        timeout: stop starting new trials after this many seconds.
        seed: the sampler's seed (and every trial's `seed` unless `options` sets one).
        progress: show an overall progress bar with an ETA and one line per trial on stderr.
        callbacks: extra Lightning callbacks for every trial's trainer.
        **options: every other `fit` option, passed to each trial.

    Returns:
        A TuneResult with the best trial and the table of all trials (also OUT/trials.csv).

    Raises:
        RunFolderError: OUT holds other files or a study with other settings, or another process
            is tuning into it.
        KeyboardInterrupt: after the study and trials.csv are saved; the same call continues it.

    Example:
        result = transferkit.tune(data="demo:mnist", model="efficientnet_lite0", image_size=64,
                                  train_per_class=20, epochs=5, trials=20, out="runs/tune-mnist")
        result.best_params, result.best_run
    """

    names = _strategies(strategies)
    low, high = _lr_range(lr_range)
    if not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"--trials must be a positive integer, got {trials!r}.")
    folder = Path(out)
    base = build_config(config, out=str(folder / "trials" / "pending"), seed=options.pop("seed", seed), **options)
    metric, mode = main_metric(base.task)
    settings = study_settings(base, names, (low, high), seed)
    _check_folder_contents(folder)
    with hold_lock(folder, "tune"):
        storage = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
        with _quiet_optuna():
            study = optuna.create_study(
                study_name=study_name or folder.resolve().name, storage=storage, load_if_exists=True,
                direction="maximize" if mode == "max" else "minimize", sampler=TrialSeededSampler(seed),
                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
        _check_settings(study, settings, folder)
        _retry_interrupted(study, folder)
        objective = _objective(base, folder, names, (low, high), metric, list(callbacks or []))
        try:
            _optimize(study, objective, trials, timeout, progress)
        finally:
            _write_table(study, folder)  # also after Ctrl-C: trials.csv shows where the search stands
        return _result(study, folder, storage)


def _optimize(study, objective, trials: int, timeout: float | None, progress: bool) -> None:
    done = len(study.get_trials(deepcopy=False, states=_FINISHED))  # not failed ones
    if trials - done <= 0:
        return
    with _quiet_optuna(), _progress(trials, done, enabled=progress) as after_trial:
        study.optimize(objective, n_trials=trials - done, timeout=timeout, catch=(), callbacks=[after_trial])


def _objective(base, folder: Path, names: list[str], lr_range, metric: str, callbacks: list):

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
        with _marking_interrupts(trial):
            run = fit(config, progress=False, callbacks=[PruneOnValidation(trial, f"val/{metric}"), *callbacks])
        if "val" not in run.metrics:
            raise ConfigError("tune scores trials on the validation split; set --val-fraction above 0.")
        return float(run.metrics["val"][metric])

    return objective


@contextmanager
def _marking_interrupts(trial) -> Iterator[None]:
    """Mark a trial cut off by Ctrl-C as interrupted, so a resumed study retries it, and re-raise.

    `fit` raises Lightning's Ctrl-C exit as the KeyboardInterrupt it was (training.fit.fit_interruptibly).
    """
    try:
        yield
    except KeyboardInterrupt:
        trial.set_user_attr("interrupted", True)
        raise


def _suggest(trial, name: str, kind: str, low: float, high: float):
    if kind == "int":
        return trial.suggest_int(name, int(low), int(high))
    return trial.suggest_float(name, low, high, log=kind == "log")


def _retry_interrupted(study, folder: Path) -> None:
    """Queue once, with its own parameters, each trial an interrupted search cut off.

    A killed process leaves its trial RUNNING (no other process runs here: the folder is locked);
    Ctrl-C leaves it FAIL with the user attribute `interrupted`. The retry carries `retry_of`, so
    an interruption is retried exactly once however often the search is resumed.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        killed = trial.state == TrialState.RUNNING
        stopped = trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted")
        if not (killed or stopped) or trial.number in retried:
            continue
        if killed:
            study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        _remove_partial_run(trial, folder)
        log.warning("Trial %d was interrupted; it runs again with the same parameters.", trial.number)


def _remove_partial_run(trial, folder: Path) -> None:
    """The cut-off trial's half-written run folder: its retry starts afresh in a folder of its own."""
    run = Path(trial.user_attrs.get("run", ""))
    trials_root = (folder / "trials").resolve()
    if run.name and run.resolve().parent == trials_root and run.is_dir():
        shutil.rmtree(run, ignore_errors=True)


# ---- what the study is a study of ------------------------------------------------------------------------------

def study_settings(base, strategies: list[str], lr_range: tuple[float, float], seed: int) -> dict[str, Any]:
    """Everything that decides the trials' scores: fit options, data content, strategies, search space, seed."""
    options = {k: v for k, v in base.to_dict().items() if k not in _NOT_SETTINGS}
    settings = {**options, "data_fingerprint": data_fingerprint(base), "strategies": strategies,
                "lr_range": list(lr_range), "search_space": SEARCH_SPACE, "sampler_seed": seed}
    return json.loads(json.dumps(settings, default=str))  # as the storage gives it back (lists, not tuples)


def data_fingerprint(config) -> str:
    """A short hash of the content of --data, --test-data and --target-data (texts, arrays; image size + mtime)."""

    digest = hashlib.sha1()
    common = dict(task=config.task, text_column=config.text_column, image_column=config.image_column,
                  label_column=config.label_column, skip_bad_files=config.skip_bad_files)
    for option in ("data", "test_data", "target_data"):
        spec = getattr(config, option)
        if not spec:
            continue
        unlabeled = dict(require_labels=False, min_classes=1) if option == "target_data" else {}
        for part, data in sorted(load_data(spec, **common, **unlabeled).items()):
            digest.update(f"{option}/{part}:{data.fingerprint()};".encode())
    return digest.hexdigest()[:16]


def _check_folder_contents(folder: Path) -> None:
    others = sorted(p.name for p in folder.iterdir() if p.name not in _TUNE_FILES) if folder.is_dir() else []
    if others:
        raise RunFolderError(f"{folder} already holds other files ({', '.join(others[:3])}) and is not a tune "
                             "folder; use another --out.")


def _check_settings(study, settings: dict[str, Any], folder: Path) -> None:
    """Record the settings in a new study; refuse, naming what differs, to continue one with others."""
    saved = study.user_attrs.get(SETTINGS_ATTR)
    if saved is None:
        if study.get_trials(deepcopy=False):
            log.warning("The study in %s recorded no settings (an older transferkit); recording today's.", folder)
        study.set_user_attr(SETTINGS_ATTR, settings)
        return
    differing = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
    if differing:
        details = "; ".join(_difference(k, saved.get(k), settings.get(k)) for k in differing)
        raise RunFolderError(f"{folder} holds a tune study with other settings ({details}); re-run with its "
                             "settings to continue it, or use another --out.")


def _difference(key: str, saved: Any, now: Any) -> str:
    if key == "data_fingerprint":
        return f"data content changed since the study began (fingerprint {saved} there, {now} now)"
    return f"{key}: {saved!r} there, {now!r} now"


# ---- output ----------------------------------------------------------------------------------------------------

@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's own lines off: tune prints one line per trial, and a failing trial's error reaches the caller."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _progress(total: int, done: int, *, enabled: bool):
    """The overall bar over trials (workflows.progress); yields the study callback that advances it."""
    with overall_bar(total, finished=done, desc="tune", unit="trial", enabled=enabled) as bar:

        def after_trial(study, trial) -> None:
            bar.line(_trial_line(trial), file=sys.stderr)
            if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                bar.note(f"best {study.best_value:.4f} (trial {study.best_trial.number})")
            if trial.state in _FINISHED:
                bar.done()

        yield after_trial


def _trial_line(trial) -> str:
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    value = f" {trial.value:.4f}" if trial.value is not None else ""
    retry = f" (retry of trial {trial.user_attrs['retry_of']})" if "retry_of" in trial.user_attrs else ""
    return f"trial {trial.number}{retry}: {trial.state.name.lower()}{value} ({params})"


def _write_table(study, folder: Path):

    table = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    atomic_write_text(folder / "trials.csv", table.to_csv(index=False))
    return table


def _result(study, folder: Path, storage: str) -> TuneResult:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(f"No trial of the study in {folder} finished (all were pruned or failed); "
                          "run more --trials or widen the search.")
    best, table = study.best_trial, study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    return TuneResult(folder, storage, study.study_name, best.value, dict(best.params), Path(best.user_attrs["run"]),
                      table)


def _strategies(strategies) -> list[str]:

    names = [s.strip() for s in strategies.split(",")] if isinstance(strategies, str) else list(strategies)
    if not names or not all(names):
        raise ConfigError("--strategies needs at least one strategy name, e.g. full,l2sp,gradual.")
    for name in names:
        get_strategy_class(name)  # UnknownNameError with close matches
    return names


def _lr_range(lr_range) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in (lr_range.split(",") if isinstance(lr_range, str) else lr_range))
    except (TypeError, ValueError):
        raise ConfigError(f"--lr-range takes two numbers, low,high (e.g. 1e-5,1e-2), got {lr_range!r}.") from None
    if not 0 < low < high:
        raise ConfigError(f"--lr-range must be two positive numbers, low before high, got {low:g},{high:g}.")
    return low, high
