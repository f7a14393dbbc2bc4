"""Check a ranking: fine-tune each candidate briefly and correlate every score with its accuracy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transferkit.errors import RunFolderError
from transferkit.transferability.ranking import RANDOM_SUFFIX, Ranking, run_folder_name

#: Random-init controls train from scratch: the fine-tuning recipes (a lower backbone learning rate,
#: fixed BatchNorm statistics, a probe-initialised head) assume weights worth keeping.
CONTROL_STRATEGY = "scratch"


def validate_ranking(ranking: Ranking, data: str, options: dict[str, Any], *, strategy: str, epochs: int) -> None:
    """Add `accuracy` (test, else val) and `finetune_s` to each row, and Kendall's tau per score."""
    for row in ranking.rows:
        run = fine_tune(row["model"], data, options, strategy=strategy, epochs=epochs,
                        folder=ranking.folder / "validate")
        split = "test" if "test" in run.metrics else "val"
        row.update(accuracy=run.metrics[split]["accuracy"], accuracy_split=split,
                   finetune_strategy=run.config.strategy, finetune_s=run.metrics["train_seconds"])
    ranking.correlations = correlations(ranking.rows, ranking.scores)


def fine_tune(model: str, data: str, options: dict[str, Any], *, strategy: str, epochs: int, folder: Path):
    """A finished run of `model` on `data`: reused when one with these settings exists, else fitted (or resumed)."""
    from transferkit.api import fit, load_run

    base = model.removesuffix(RANDOM_SUFFIX)
    settings = {k: v for k, v in options.items() if v is not None}
    settings.update(data=data, model=base, strategy=strategy if base == model else CONTROL_STRATEGY, epochs=epochs)
    out = folder / run_folder_name(model)
    try:
        run = load_run(out)
    except RunFolderError:
        return fit(out=str(out), resume=(out / "config.yaml").is_file(), progress=False, **settings)
    stale = [k for k, v in settings.items() if getattr(run.config, k, v) != v]
    if stale:
        raise RunFolderError(f"{out} holds a validation run with other settings ({', '.join(stale)}); "
                             "remove it or rank into another --out.")
    return run


def correlations(rows: list[dict[str, Any]], scores: list[str]) -> dict[str, dict[str, Any]]:
    """Kendall's tau (and its p-value) between each score and the measured accuracy, over candidates."""
    from scipy.stats import kendalltau

    result = {}
    for score in scores:
        pairs = [(r[score], r["accuracy"]) for r in rows if r.get(score) is not None and r.get("accuracy") is not None]
        tau, p_value = kendalltau(*zip(*pairs)) if len(pairs) >= 2 else (math.nan, math.nan)
        result[score] = {"kendall_tau": None if math.isnan(tau) else round(float(tau), 4),
                         "p_value": None if math.isnan(p_value) else round(float(p_value), 4), "n": len(pairs)}
    return result
