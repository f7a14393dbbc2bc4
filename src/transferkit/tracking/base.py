"""The Tracker interface: a named factory of one Lightning logger, plus what to log once a run ends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

#: Files of a finished run folder that trackers store with the run (checkpoints and logs stay local).
RUN_ARTIFACTS = ("config.yaml", "metrics.json", "history.csv", "predictions_val.csv", "predictions_test.csv")


class Tracker:
    """An experiment tracker that a run logs to besides its own CSV log.

    Subclasses return a Lightning logger from `make_logger`; the one training path hands it to the
    Trainer, so per-epoch metrics arrive through Lightning. `finish` adds what only exists once the
    run folder is written: the final metrics and the folder's files.
    """

    name: ClassVar[str]
    #: One line for the docs and `--tracker` help.
    description: ClassVar[str] = ""

    def resolve(self, config, root: Path | None = None):
        """Return `config` with tracker defaults filled in (e.g. a store under `root`, the output root)."""
        return config

    def make_logger(self, config, out: Path, *, version: str, resume: bool):
        """A Lightning logger for the run in `out`, or None when the CSV log is all this tracker needs."""
        return None

    def finish(self, logger, out: Path) -> None:
        """Log the final metrics of the finished run in `out` and close the logger."""


def final_metrics(out: Path) -> dict[str, float]:
    """Numbers of metrics.json as flat `final/...` keys (`final/test/accuracy`, `final/train_seconds`)."""
    payload = json.loads((Path(out) / "metrics.json").read_text(encoding="utf-8"))
    flat: dict[str, float] = {}
    for key, value in payload.items():
        if isinstance(value, dict):
            flat.update({f"final/{key}/{k}": float(v) for k, v in value.items() if _is_number(v)})
        elif _is_number(value):
            flat[f"final/{key}"] = float(value)
    return flat


def history_rows(history: list[dict[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """(epoch, numeric metrics) per history row, for trackers fed without a Trainer."""
    rows = []
    for row in history:
        values = {k: float(v) for k, v in row.items() if k not in ("epoch", "step") and _is_number(v)}
        rows.append((int(row.get("epoch", 0)), values))
    return rows


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
