"""The report's statistics and warnings on hand-made tables, and a regression comparison's report."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats
from synthetic_data import write_counts

import transferkit
from transferkit.evaluation.report import mean_ci, summarize, transfer_benefit, write_report


def test_mean_ci_is_the_student_t_interval():
    values = [0.71, 0.74, 0.69, 0.77]
    mean, half = mean_ci(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 4, scale=stats.sem(values))
    assert mean == pytest.approx((low + high) / 2) and half == pytest.approx((high - low) / 2)


def test_mean_ci_of_one_seed_has_no_interval():
    mean, half = mean_ci([0.5])
    assert mean == 0.5 and math.isnan(half)


def table(scores: dict[str, list[float]], task: str = "classification", column: str = "test/accuracy",
          size: str = "10") -> pd.DataFrame:
    rows = [{"cell": f"{s}-n{size}-seed{i}", "strategy": s, "train_per_class": size, "seed": i, "task": task,
             "pretrained": s != "scratch", column: v, "train_seconds": 1.0, "trainable_params": 10,
             "labels_per_class": float(size), "n_train": 10 * int(size), "folder": f"cells/{s}-n{size}-seed{i}"}
            for s, values in scores.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_transfer_benefit_is_paired_by_seed_and_flags_negative_transfer():
    scores = table({"scratch": [0.50, 0.60, 0.70], "full": [0.55, 0.66, 0.74], "partial": [0.45, 0.58, 0.69]})
    benefit = transfer_benefit(scores, "test/accuracy").set_index("strategy")
    assert benefit.loc["full", "gain"] == pytest.approx(0.05)
    # Paired differences 0.05, 0.06, 0.04: a tight interval although the scores themselves spread widely.
    assert benefit.loc["full", "half"] == pytest.approx(mean_ci([0.05, 0.06, 0.04])[1])
    assert benefit.loc["full", "verdict"] == "helps"
    assert benefit.loc["partial", "verdict"] == "negative transfer"


def test_lower_error_counts_as_a_gain_in_regression():
    scores = table({"scratch": [2.0, 2.2, 2.1], "feature-extraction": [1.5, 1.6, 1.58]}, task="regression",
                   column="test/rmse")
    [row] = transfer_benefit(scores, "test/rmse").itertuples()
    assert row.gain == pytest.approx(0.54) and row.verdict == "helps"
    summary = summarize(scores, "test/rmse").set_index("strategy")
    assert summary.loc["feature-extraction", "best"] and not summary.loc["scratch", "best"]


def test_no_scratch_baseline_says_how_to_get_one(tmp_path):
    spec = {"strategies": ["full", "partial"], "train_per_class": [10], "seeds": [0, 1],
            "options": {"data": "d", "model": "m"}}
    md, _ = write_report(tmp_path, spec, table({"full": [0.8, 0.9], "partial": [0.7, 0.8]}))
    assert "add the `scratch` strategy" in md.read_text()


def test_negative_transfer_warning_is_in_both_reports(tmp_path):
    spec = {"strategies": ["feature-extraction", "scratch"], "train_per_class": [10], "seeds": [0, 1],
            "options": {"data": "demo:digits", "model": "m"}}
    md, page = write_report(tmp_path, spec, table({"feature-extraction": [0.4, 0.5], "scratch": [0.6, 0.7]}))
    expected = "Negative transfer: feature-extraction does not beat scratch at 10 labels per class"
    assert f"> **Warning:** {expected}" in md.read_text()
    assert f'<div class="alert" role="alert"><strong>Warning:</strong> {expected}' in page.read_text()


def test_an_unfinished_comparison_says_so(tmp_path):
    spec = {"strategies": ["full", "scratch"], "train_per_class": [10], "seeds": [0, 1, 2],
            "options": {"data": "d", "model": "m"}}
    md, _ = write_report(tmp_path, spec, table({"full": [0.8, 0.9], "scratch": [0.7, 0.8]}))
    assert "4 of 6 cells finished" in md.read_text() and "2 cells are not finished" in md.read_text()


def test_regression_comparison_reports_rmse_and_a_scatter(tmp_path):
    data = write_counts(tmp_path / "counts.csv", rows=60)
    result = transferkit.compare(data=str(data), task="regression", model="tiny-text", epochs=2,
                                 strategies="feature-extraction,scratch", seeds=2, out=str(tmp_path / "cmp"),
                                 progress=False)
    assert len(result.table) == 4 and list(result.table["train_per_class"].unique()) == ["all"]
    md = result.report_md.read_text()
    assert "test rmse (lower is better)" in md and "## Transfer benefit" in md
    assert "Predicted vs true values of the best run" in md
    assert (result.folder / "figures" / "best-run.png").is_file()
