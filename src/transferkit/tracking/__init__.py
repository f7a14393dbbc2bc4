"""Experiment trackers by name: `csv` (always on), `tensorboard`, `mlflow`; thin adapters over Lightning loggers.

Every run keeps its CSV log (history.csv is built from it); the tracker named by `RunConfig.tracker`
adds one more Lightning logger, fed by the same Trainer, and logs the final metrics when the run ends.
"""

from __future__ import annotations

from pathlib import Path

from transferkit.registry import Registry
from transferkit.tracking.base import Tracker, history_rows
from transferkit.tracking.mlflow import MLflowTracker
from transferkit.tracking.tensorboard import TensorBoardTracker

TRACKERS: Registry[Tracker] = Registry("tracker")


class CSVTracker(Tracker):
    """Lightning's CSV log in <run>/logs/attempt*/ and history.csv: what every run writes anyway."""

    name = "csv"
    description = "CSV only: <run>/logs/attempt*/metrics.csv and history.csv (always written)"


def register_tracker(tracker: Tracker) -> Tracker:
    """Register a Tracker instance under its `name`."""
    return TRACKERS.register(tracker.name, tracker)


for _tracker in (CSVTracker(), TensorBoardTracker(), MLflowTracker()):
    register_tracker(_tracker)


def get_tracker(name: str) -> Tracker:
    """The tracker called `name`; UnknownNameError with close matches otherwise."""
    return TRACKERS.get(name)


def list_trackers() -> list[dict[str, str]]:
    return [{"name": n, "description": TRACKERS.get(n).description} for n in TRACKERS.names()]


def resolve(config, root: Path | None = None):
    """Check the tracker name and fill its defaults into `config` (saved resolved with the run).

    Args:
        config: the run's RunConfig.
        root: the output root that holds the tracker's store (default: the run folder's parent).
    """
    return get_tracker(config.tracker).resolve(config, root)


def open_loggers(config, out: Path, *, version: str, resume: bool) -> list:
    """Extra Lightning loggers of the run in `out` (besides the CSV log): zero or one."""
    logger = get_tracker(config.tracker).make_logger(config, Path(out), version=version, resume=resume)
    return [] if logger is None else [logger]


def log_history(loggers: list, history: list[dict]) -> None:
    """Send per-epoch rows to loggers that trained without a Trainer (scikit-learn heads)."""
    for logger in loggers:
        for epoch, values in history_rows(history):
            logger.log_metrics(values, step=epoch)


def finish(config, loggers: list, out: Path) -> None:
    """Log the final metrics and files of the finished run in `out`."""
    tracker = get_tracker(config.tracker)
    for logger in loggers:
        tracker.finish(logger, Path(out))


__all__ = ["TRACKERS", "Tracker", "finish", "get_tracker", "list_trackers", "log_history", "open_loggers",
           "register_tracker", "resolve"]
