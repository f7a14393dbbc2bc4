"""The report's intervals: bootstrap over seeds and test items, inside the metric's range, paired for gains."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fake_cells import correct, write_cells
from scipy import stats

from transferkit.evaluation.bootstrap import (Interval, over_seeds, over_seeds_and_items, percentile,
                                              resample_items, rng_for)
from transferkit.evaluation.report import uncertainty_for


def score(folder, table, strategy="full"):
    stats_ = uncertainty_for(folder, table)
    return stats_.score(table[table["strategy"] == strategy], ("10", strategy)), stats_


@pytest.mark.parametrize("per_seed", [(0, 90), (90, 0), (0, 0), (90, 90), (89, 90), (1, 0), (45, 90)])
def test_accuracy_interval_stays_in_0_1_with_two_seeds_and_extreme_values(tmp_path, per_seed):
    table = write_cells(tmp_path, {"full": [correct(90, k) for k in per_seed]})
    interval, _ = score(tmp_path, table)
    accuracies = [k / 90 for k in per_seed]
    assert interval.estimate == pytest.approx(np.mean(accuracies))
    assert 0 <= interval.low <= interval.estimate <= interval.high <= 1, interval
    if np.ptp(accuracies):  # the t-interval over two seeds that the report printed before leaves [0, 1]
        low, high = stats.t.interval(0.95, 1, loc=np.mean(accuracies), scale=stats.sem(accuracies))
        assert low < 0 or high > 1


@pytest.mark.parametrize("predictions", [True, False])
def test_seed_only_fallback_is_clipped_and_said(tmp_path, predictions):
    table = write_cells(tmp_path, {"full": [correct(50, 0), correct(50, 50)]}, predictions=predictions)
    interval, stats_ = score(tmp_path, table)
    assert 0 <= interval.low <= interval.high <= 1
    line = stats_.method_line()
    if predictions:
        assert "over seeds and, within each seed, the test items of predictions_test.csv" in line
        assert "seeds only" not in line
    else:
        assert line.startswith("Intervals resampling seeds only") and "full-n10-seed0 (no predictions_test.csv)" in line
        assert (interval.low, interval.high) == (0.0, 1.0)  # two seeds at 0 and 1: the bootstrap spans both


def test_one_seed_interval_is_the_binomial_sampling_error_of_the_test_set(tmp_path):
    n, k = 400, 300
    table = write_cells(tmp_path, {"full": [correct(n, k)]})
    interval, stats_ = score(tmp_path, table)
    assert "its interval reflects the test items alone, not the variation between seeds" in stats_.method_line()
    normal_half = 1.96 * math.sqrt(0.75 * 0.25 / n)  # items are the only noise left with one seed
    assert (interval.high - interval.low) / 2 == pytest.approx(normal_half, rel=0.12)


def test_one_seed_without_predictions_has_no_interval(tmp_path):
    table = write_cells(tmp_path, {"full": [correct(20, 10)]}, predictions=False)
    interval, stats_ = score(tmp_path, table)
    assert not interval.known and interval.text() == "n/a (1 seed)"
    assert stats_.method_line().startswith("No intervals")


def test_more_test_items_give_a_narrower_interval(tmp_path):
    small = write_cells(tmp_path / "small", {"full": [correct(40, 30), correct(40, 28)]})
    large = write_cells(tmp_path / "large", {"full": [correct(4000, 3000), correct(4000, 2800)]})
    narrow, _ = score(tmp_path / "large", large)
    wide, _ = score(tmp_path / "small", small)
    assert narrow.high - narrow.low < wide.high - wide.low


def test_paired_difference_is_tight_when_strategies_disagree_on_few_items(tmp_path):
    # Both get about 60% right on the same items; "full" also gets 8 more right out of 200 per seed.
    base = [correct(200, 120), correct(200, 110, offset=30)]
    better = [m.copy() for m in base]
    for m in better:
        m[np.flatnonzero(~m)[:8]] = True
    table = write_cells(tmp_path, {"full": better, "scratch": base})
    stats_ = uncertainty_for(tmp_path, table)
    own = [stats_.score(table[table["strategy"] == s], ("10", s)) for s in ("full", "scratch")]
    assert own[0].low < own[1].high  # the two intervals overlap ...
    gain = stats_.difference(table[table["strategy"] == "full"], table[table["strategy"] == "scratch"], ("10",))
    assert gain.estimate == pytest.approx(0.04)
    assert 0 < gain.low <= 0.04 <= gain.high < 0.07  # ... yet the paired difference clearly excludes 0


def test_items_that_differ_between_a_pair_fall_back_to_seeds(tmp_path):
    table = write_cells(tmp_path, {"full": [correct(30, 20), correct(30, 25)],
                                   "scratch": [correct(30, 10), correct(30, 12)]})
    other = tmp_path / "cells" / "scratch-n10-seed1" / "predictions_test.csv"
    other.write_text(other.read_text().replace("\n0,1,1\n", "\n0,5,5\n", 1))  # another item 0, still right
    stats_ = uncertainty_for(tmp_path, table)
    gain = stats_.difference(table[table["strategy"] == "full"], table[table["strategy"] == "scratch"], ("10",))
    assert gain.known and "its items differ from its pair's" in stats_.method_line()


def test_predictions_that_do_not_reproduce_the_metric_are_not_used(tmp_path):
    table = write_cells(tmp_path, {"full": [correct(30, 20), correct(30, 25)]})
    table.loc[0, "test/accuracy"] = 0.9
    _, stats_ = score(tmp_path, table)
    assert "gives accuracy 0.6667, metrics.json 0.9000" in stats_.method_line()


def test_intervals_are_reproducible(tmp_path):
    table = write_cells(tmp_path, {"full": [correct(50, 20), correct(50, 35)]})
    assert score(tmp_path, table)[0] == score(tmp_path, table)[0]


def test_rmse_interval_is_never_negative():
    rng = rng_for("test")
    errors = [np.array([[0.0]] * 30 + [[0.01]]), np.array([[0.0]] * 31)]  # squared errors, nearly perfect
    replicates = over_seeds_and_items(errors, np.sqrt, rng)[:, 0]
    interval = percentile(0.009, replicates, (0.0, np.inf))
    assert interval.low == 0.0 and 0 < interval.high < 0.1


def test_item_resampling_matches_for_few_and_many_distinct_rows():
    """Multinomial counts of distinct rows and index resampling draw from the same distribution."""
    rows = (np.arange(100) < 70).astype(float)[:, None]
    few = resample_items(rows, lambda m: m, rng_for("a"), 4000)[:, 0]
    jittered = rows + np.linspace(0, 1e-9, 100)[:, None]  # 100 distinct rows: index resampling
    many = resample_items(jittered, lambda m: m, rng_for("b"), 4000)[:, 0]
    for draws in (few, many):
        assert draws.mean() == pytest.approx(0.7, abs=0.005)
        assert draws.std() == pytest.approx(math.sqrt(0.21 / 100), rel=0.06)


def test_seed_bootstrap_of_differences_keeps_the_sign():
    gaps = np.array([0.2, 0.3])
    interval = percentile(0.25, over_seeds(gaps[:, None], rng_for("x"))[:, 0])
    assert interval == Interval(0.25, 0.2, 0.3) and interval.excludes_zero
