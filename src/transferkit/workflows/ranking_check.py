"""Check a ranking: fine-tune each candidate briefly and correlate every score with its accuracy."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from transferkit.errors import RunFolderError
from transferkit.options import build_config
from transferkit.runs import Run
from transferkit.training import fit as engine
from transferkit.workflows.progress import overall_bar

#: A candidate named `<model>@random` is `<model>` with random weights: a control that should rank last.
RANDOM_SUFFIX = "@random"
#: Random-init controls train from scratch: the fine-tuning recipes (a lower backbone learning rate,
#: fixed BatchNorm statistics, a probe-initialised head) assume weights worth keeping.
CONTROL_STRATEGY = "scratch"


def validate_ranking(ranking, data: str, options: dict[str, Any], *, strategy: str, epochs: int,
                     progress: bool = True) -> None:
    """Add `accuracy` (test, else val) and `finetune_s` to each row, and Kendall's tau per score.

    `progress` shows one bar over the candidates' fine-tunings, with an ETA, on stderr.
    """
    folder = ranking.folder / "validate"
    finished = sum((folder / run_folder_name(row["model"]) / "metrics.json").is_file() for row in ranking.rows)
    with overall_bar(len(ranking.rows), finished=finished, desc="rank --validate", unit="run",
                     enabled=progress) as bar:
        for row in ranking.rows:
            before = (folder / run_folder_name(row["model"]) / "metrics.json").is_file()
            run = fine_tune(row["model"], data, options, strategy=strategy, epochs=epochs, folder=folder)
            split = "test" if "test" in run.metrics else "val"
            row.update(accuracy=run.metrics[split]["accuracy"], accuracy_split=split,
                       finetune_strategy=run.config.strategy, finetune_s=run.metrics["train_seconds"])
            bar.done(skipped=before)
    ranking.correlations = correlations(ranking.rows, ranking.scores)


def fine_tune(model: str, data: str, options: dict[str, Any], *, strategy: str, epochs: int, folder: Path):
    """A finished run of `model` on `data`: reused when one with these settings exists, else fitted (or resumed)."""
    base = model.removesuffix(RANDOM_SUFFIX)
    settings = {k: v for k, v in options.items() if v is not None}
    settings.update(data=data, model=base, strategy=strategy if base == model else CONTROL_STRATEGY, epochs=epochs)
    out = folder / run_folder_name(model)
    try:
        run = Run.load(out)
    except RunFolderError:
        return engine.fit(build_config(out=str(out), **settings), resume=(out / "config.yaml").is_file(),
                          progress=False)
    stale = [k for k, v in settings.items() if getattr(run.config, k, v) != v]
    if stale:
        raise RunFolderError(f"{out} holds a validation run with other settings ({', '.join(stale)}); "
                             "remove it or rank into another --out.")
    return run


def run_folder_name(model: str) -> str:
    """A folder name for a candidate (`hf:./my-encoder` -> `hf_._my-encoder`)."""
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", model)


def correlations(rows: list[dict[str, Any]], scores: list[str]) -> dict[str, dict[str, Any]]:
    """Kendall's tau (and its p-value) between each score and the measured accuracy, over candidates."""
    from scipy.stats import kendalltau  # deferred: scipy.stats is slow to import

    result = {}
    for score in scores:
        pairs = [(r[score], r["accuracy"]) for r in rows if r.get(score) is not None and r.get("accuracy") is not None]
        tau, p_value = kendalltau(*zip(*pairs)) if len(pairs) >= 2 else (math.nan, math.nan)
        result[score] = {"kendall_tau": None if math.isnan(tau) else round(float(tau), 4),
                         "p_value": None if math.isnan(p_value) else round(float(p_value), 4), "n": len(pairs)}
    return result
