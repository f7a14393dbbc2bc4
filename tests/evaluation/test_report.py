"""The report's verdicts and wording on hand-made tables, and a regression comparison's report."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from fake_cells import correct, spec_for, write_cells
from synthetic_data import write_counts

import transferkit
from transferkit.evaluation.bootstrap import Interval
from transferkit.evaluation.report import (_curves, best_run_on_validation, summarize, transfer_benefit,
                                           uncertainty_for, verdict, write_report)


def table(scores: dict[str, list[float]], task: str = "classification", column: str = "test/accuracy",
          size: str = "10") -> pd.DataFrame:
    """A comparison table without cell folders: the report falls back to seed-only intervals."""
    rows = [{"cell": f"{s}-n{size}-seed{i}", "strategy": s, "train_per_class": size, "seed": i, "task": task,
             "pretrained": s != "scratch", column: v, "train_seconds": 1.0, "trainable_params": 10,
             "labels_per_class": float(size), "n_train": 10 * int(size), "folder": f"cells/{s}-n{size}-seed{i}"}
            for s, values in scores.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def summary_of(folder, table_):
    return summarize(table_, uncertainty_for(folder, table_)).set_index("strategy")


def test_overlapping_leaders_are_tied_and_named(tmp_path):
    # 62% and 60% right on 100 items per seed, mostly different items: no separation with two seeds.
    masks = {"full": [correct(100, 62), correct(100, 61, offset=20)],
             "partial": [correct(100, 60, offset=40), correct(100, 60, offset=50)],
             "scratch": [correct(100, 20), correct(100, 22)]}
    table_ = write_cells(tmp_path, masks)
    summary = summary_of(tmp_path, table_)
    assert list(summary["tied"]) == [True, True, False] and not summary["best"].any()
    md = write_report(tmp_path, spec_for(table_), table_)[0].read_text()
    assert "10 labels per class: tied for best in test accuracy: full (0.615 [" in md and "), partial (0.600 [" in md
    assert "*10 labels per class: tied for best: full, partial (the paired interval" in md
    assert "★" not in md


def test_a_separated_best_is_starred(tmp_path):
    masks = {"full": [correct(100, 90), correct(100, 88)], "partial": [correct(100, 60), correct(100, 62)]}
    table_ = write_cells(tmp_path, masks)
    summary = summary_of(tmp_path, table_)
    assert summary["best"].tolist() == [True, False] and not summary["tied"].any()
    assert summary.loc["partial", "vs_top"].high < 0
    md = write_report(tmp_path, spec_for(table_), table_)[0].read_text()
    assert "| **★ full** |" in md and "10 labels per class: best is full (test accuracy 0.890 [" in md


def test_lower_error_is_better_in_regression():
    scores = table({"scratch": [2.0, 2.2, 2.1], "feature-extraction": [1.5, 1.6, 1.58]}, task="regression",
                   column="test/rmse")
    stats_ = uncertainty_for(".", scores)
    [row] = transfer_benefit(scores, stats_).itertuples()
    assert row.gain == pytest.approx(0.54) and row.verdict == "helps" and row.interval.low > 0
    summary = summarize(scores, stats_).set_index("strategy")
    assert summary.loc["feature-extraction", "best"] and not summary.loc["scratch", "best"]
    assert summary.loc["scratch", "interval"].low >= 0


def test_best_run_is_chosen_on_validation_not_test(tmp_path):
    masks = {"full": [correct(50, 45), correct(50, 30)], "partial": [correct(50, 40), correct(50, 35)]}
    val = {"full": [0.50, 0.55], "partial": [0.80, 0.60]}  # test prefers full-seed0, validation partial-seed0
    table_ = write_cells(tmp_path, masks, val=val)
    assert table_.loc[table_["test/accuracy"].idxmax(), "cell"] == "full-n10-seed0"
    assert best_run_on_validation(table_, "test/accuracy")["cell"] == "partial-n10-seed0"
    md = write_report(tmp_path, spec_for(table_), table_)[0].read_text()
    caption = re.search(r"\*Confusion matrix of the best run: (.*)\*", md).group(1)
    assert caption.startswith("partial-n10-seed0, chosen on validation data (the highest val accuracy of all "
                              "cells, 0.800") and "never on test" in caption
    assert "where it scores test accuracy 0.800" in caption


def test_without_validation_scores_no_best_run_is_shown(tmp_path):
    table_ = write_cells(tmp_path, {"full": [correct(20, 10), correct(20, 12)]}).drop(columns="val/accuracy")
    md = write_report(tmp_path, spec_for(table_), table_)[0].read_text()
    assert "No validation scores: no best run is shown" in md and "Confusion matrix" not in md


@pytest.mark.parametrize("low, high, expected", [(0.01, 0.2, "helps"), (-0.05, 0.2, "no clear difference"),
                                                 (float("nan"), float("nan"), "no interval (one seed)")])
def test_gains_and_losses_are_worded_symmetrically(low, high, expected):
    gain, loss = Interval((low + high) / 2, low, high), Interval(-(low + high) / 2, -high, -low)
    mirrored = {"helps": "hurts"}.get(expected, expected)
    assert verdict(gain) == expected and verdict(loss) == mirrored
    assert verdict(loss, "negative transfer") == {"helps": "negative transfer"}.get(expected, expected)


def test_mirrored_gains_get_mirrored_verdicts_in_the_report(tmp_path):
    base = [correct(100, 50), correct(100, 52, offset=10)]
    up, down = [m.copy() for m in base], [m.copy() for m in base]
    for u, d in zip(up, down):
        u[np.flatnonzero(~u)[:1]] = True  # one item better per seed: a gain too small to tell from noise
        d[np.flatnonzero(d)[:1]] = False
    table_ = write_cells(tmp_path, {"full": up, "partial": down, "scratch": base})
    benefit = transfer_benefit(table_, uncertainty_for(tmp_path, table_)).set_index("strategy")
    assert benefit.loc["full", "gain"] == pytest.approx(0.01) and benefit.loc["partial", "gain"] == pytest.approx(-0.01)
    assert benefit["verdict"].tolist() == ["no clear difference"] * 2
    md = write_report(tmp_path, spec_for(table_), table_)[0].read_text()
    assert "Negative transfer" not in md


def test_learning_curves_count_epochs_from_one_and_carry_both_losses(tmp_path):
    table_ = write_cells(tmp_path, {"full": [correct(10, 5), correct(10, 6)]})
    for seed, offset in enumerate((0.0, 0.2)):
        pd.DataFrame({"epoch": [0, 1], "train/loss": [1.0 + offset, 0.5 + offset], "val/loss": [1.2, 0.9],
                      "val/accuracy": [0.3, 0.5 + offset]}).to_csv(
            tmp_path / "cells" / f"full-n10-seed{seed}" / "history.csv", index=False)
    [curves] = _curves(tmp_path, table_, "val/accuracy").values()
    series = curves["full"]
    assert series["metric"] == ([1, 2], pytest.approx([0.3, 0.6]))
    assert series["train loss"] == ([1, 2], pytest.approx([1.1, 0.6]))
    assert series["val loss"] == ([1, 2], pytest.approx([1.2, 0.9]))
    md = write_report(tmp_path, spec_for(table_), table_)[0].read_text()
    assert "train loss (solid) and val loss (dashed)" in md and "dotted: chance level" in md


def test_reports_are_reproducible(tmp_path):
    table_ = write_cells(tmp_path, {"full": [correct(40, 30), correct(40, 20)], "scratch": [correct(40, 9)] * 2})
    first = write_report(tmp_path, spec_for(table_), table_)[0].read_text()
    assert write_report(tmp_path, spec_for(table_), table_)[0].read_text() == first


def test_no_scratch_baseline_says_how_to_get_one(tmp_path):
    spec = {"strategies": ["full", "partial"], "train_per_class": [10], "seeds": [0, 1],
            "options": {"data": "d", "model": "m"}}
    md, _ = write_report(tmp_path, spec, table({"full": [0.8, 0.9], "partial": [0.7, 0.8]}))
    assert "add the `scratch` strategy" in md.read_text()


def test_negative_transfer_warning_is_in_both_reports(tmp_path):
    table_ = write_cells(tmp_path, {"feature-extraction": [correct(100, 40), correct(100, 50)],
                                    "scratch": [correct(100, 60), correct(100, 70)]})
    md, page = write_report(tmp_path, spec_for(table_), table_)
    expected = "Negative transfer: feature-extraction does worse than scratch at 10 labels per class (gain -0.200 ["
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
    assert "Predicted vs true values of the best run" in md and "chosen on validation data" in md
    results = md.split("## Results per data size")[1].split("## Transfer benefit")[0].replace("**", "")
    lows = [float(low) for low in re.findall(r"\| \[(-?[\d.]+), -?[\d.]+\] \|", results)]
    assert len(lows) == 2 and min(lows) >= 0  # an RMSE interval never goes below 0
    assert (result.folder / "figures" / "best-run.png").is_file()
