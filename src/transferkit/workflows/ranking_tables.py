"""The tables `transferkit rank` prints."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def ranking_table(ranking):
    """Candidates best first: each score, and the fine-tuned accuracy when validated."""
    validated = any("accuracy" in row for row in ranking.rows)
    samples = ranking.rows[0]["samples"] if ranking.rows else 0
    table = Table(title=f"ranked by {ranking.sort_by} ({samples} samples)")
    for col in ("#", "model", *ranking.scores, *(["accuracy"] if validated else [])):
        table.add_column(col, justify="left" if col == "model" else "right")
    for i, row in enumerate(ranking.rows, 1):
        cells = [str(i), row["model"], *(_value(row[s], 4) for s in ranking.scores)]
        table.add_row(*cells, *([_value(row.get("accuracy"), 3)] if validated else []))
    return table


def timing_table(ranking):
    """Seconds each candidate took: its features, each score, and fine-tuning when validated."""
    tuned = any("finetune_s" in row for row in ranking.rows)
    table = Table(title="seconds (cached features load in next to no time)")
    for col in ("model", "features", *ranking.scores, *(["fine-tuning"] if tuned else [])):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in ranking.rows:
        cells = [row["model"], _value(row["features_s"], 2), *(_value(row[f"{s}_s"], 2) for s in ranking.scores)]
        table.add_row(*cells, *([_value(row.get("finetune_s"), 1)] if tuned else []))
    return table


def correlation_table(ranking):
    """Kendall's tau between each score and the fine-tuned accuracy."""
    strategies = sorted({row.get("finetune_strategy", "") for row in ranking.rows} - {""})
    table = Table(title=f"rank correlation with fine-tuned accuracy ({', '.join(strategies)})")
    for col in ("score", "Kendall's tau", "p-value", "candidates"):
        table.add_column(col, justify="left" if col == "score" else "right")
    for score, values in ranking.correlations.items():
        table.add_row(score, _value(values["kendall_tau"], 3), _value(values["p_value"], 3), str(values["n"]))
    return table


def _value(value: Any, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
