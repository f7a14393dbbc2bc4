"""Intervals for a comparison's cells, from their prediction files when they hold them, else from seeds alone.

`Uncertainty` scores one strategy at one data size (the mean over its seeds, with a bootstrap interval over
seeds and test items) and the paired difference between two strategies (same seeds, same test items). It
remembers which method each interval used, so the report can say so in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from transferkit.evaluation.bootstrap import (CONFIDENCE, ITEM_METRICS, METRIC_RANGES, RESAMPLES, Interval,
                                              over_seeds, over_seeds_and_items, percentile, rng_for)

NO_INTERVAL = float("nan")


class Uncertainty:
    """Bootstrap intervals of a comparison table's main metric, column `split/metric`.

    Args:
        folder: the comparison folder (cells' `folder` column is relative to it).
        column: e.g. "test/accuracy"; items come from each cell's predictions_<split>.csv.
        higher_is_better: the metric's direction; differences are signed so positive is better.
    """

    def __init__(self, folder: Path, column: str, *, higher_is_better: bool) -> None:
        self.folder, self.column = Path(folder), column
        self.split, self.metric = column.split("/")
        self.sign = 1.0 if higher_is_better else -1.0
        self.bounds = METRIC_RANGES.get(self.metric, (-np.inf, np.inf))
        self.item_metric = ITEM_METRICS.get(self.metric)
        self.seed_only_cells: dict[str, str] = {}  # cell -> why its items could not be used
        self.used: set[str] = set()  # "items", "seeds", "one seed" (items of a single seed)
        self._cache: dict[str, pd.DataFrame | None] = {}

    # ---- per-item values -------------------------------------------------------------------------------------

    def items(self, row: pd.Series) -> pd.DataFrame | None:
        """Per-item values (column `value`) and targets of a cell's predictions, indexed by item; None if unusable."""
        cell = str(row["cell"])
        if cell not in self._cache:
            self._cache[cell] = self._read_items(row)
        return self._cache[cell]

    def _read_items(self, row: pd.Series) -> pd.DataFrame | None:
        name = f"predictions_{self.split}.csv"
        if self.item_metric is None:
            self.seed_only_cells[str(row["cell"])] = f"{self.metric} is not a mean over items"
            return None
        path = self.folder / str(row["folder"]) / name
        if not path.is_file():
            self.seed_only_cells[str(row["cell"])] = f"no {name}"
            return None
        frame = pd.read_csv(path, dtype={"target": str, "prediction": str})
        missing = {"index", "target", "prediction"} - set(frame.columns)
        if missing or frame.empty:
            self.seed_only_cells[str(row["cell"])] = f"{name} lacks {', '.join(sorted(missing)) or 'rows'}"
            return None
        target, prediction = frame["target"], frame["prediction"]
        if self.item_metric.numeric:
            target, prediction = target.astype(float), prediction.astype(float)
        values = self.item_metric.per_item(target.to_numpy(), prediction.to_numpy())
        recomputed = float(self.item_metric.finish(np.mean(values)))
        if not np.isclose(recomputed, float(row[self.column]), rtol=1e-4, atol=1e-6):
            self.seed_only_cells[str(row["cell"])] = (f"{name} gives {self.metric} {recomputed:.4f}, "
                                                      f"metrics.json {float(row[self.column]):.4f}")
            return None
        return pd.DataFrame({"target": frame["target"].to_numpy(), "value": values}, index=frame["index"])

    # ---- intervals -------------------------------------------------------------------------------------------

    def score(self, runs: pd.DataFrame, key: tuple) -> Interval:
        """The mean over seeds of one strategy's runs at one data size, and its interval."""
        values = runs[self.column].to_numpy(dtype=float)
        estimate = float(np.nanmean(values)) if len(values) else NO_INTERVAL
        items = [self.items(row) for _, row in runs.iterrows()]
        if items and all(i is not None for i in items):
            self.used.update(["items"] + (["one seed"] if len(items) == 1 else []))
            samples = [i["value"].to_numpy()[:, None] for i in items]
            replicates = over_seeds_and_items(samples, self.item_metric.finish, rng_for("score", *key))[:, 0]
            return percentile(estimate, replicates, self.bounds)
        return self._seed_interval(estimate, values[:, None], key, self.bounds)

    def difference(self, runs: pd.DataFrame, baseline: pd.DataFrame, key: tuple) -> Interval | None:
        """Paired difference (runs minus baseline, signed so positive is better) over the seeds both have.

        None when they share no seed. Items are paired by their `index` within each seed's split; a seed
        whose two prediction files list different items makes the whole difference fall back to seeds.
        """
        a, b = runs.set_index("seed"), baseline.set_index("seed")
        seeds = a.index.intersection(b.index)
        if not len(seeds):
            return None
        gaps = self.sign * (a.loc[seeds, self.column].to_numpy(float) - b.loc[seeds, self.column].to_numpy(float))
        estimate = float(gaps.mean())
        low, high = self.bounds
        bounds = (low - high, high - low)
        samples = self._paired_items(a.loc[seeds], b.loc[seeds])
        if samples is None:
            return self._seed_interval(estimate, gaps[:, None], key, bounds)
        self.used.update(["items"] + (["one seed"] if len(samples) == 1 else []))
        replicates = over_seeds_and_items(samples, self.item_metric.finish, rng_for("difference", *key))
        return percentile(estimate, self.sign * (replicates[:, 0] - replicates[:, 1]), bounds)

    def _paired_items(self, a: pd.DataFrame, b: pd.DataFrame) -> list[np.ndarray] | None:
        samples = []
        for seed in a.index:
            items_a, items_b = self.items(a.loc[seed]), self.items(b.loc[seed])
            if items_a is None or items_b is None:
                return None
            if not (items_a.index.equals(items_b.index) and items_a["target"].equals(items_b["target"])):
                for row in (a.loc[seed], b.loc[seed]):
                    self.seed_only_cells.setdefault(str(row["cell"]), "its items differ from its pair's")
                return None
            samples.append(np.column_stack([items_a["value"].to_numpy(), items_b["value"].to_numpy()]))
        return samples

    def _seed_interval(self, estimate: float, values: np.ndarray, key: tuple, bounds) -> Interval:
        if len(values) < 2:
            return Interval(estimate, NO_INTERVAL, NO_INTERVAL)
        self.used.add("seeds")
        return percentile(estimate, over_seeds(values, rng_for("seeds", *key))[:, 0], bounds)

    # ---- what the report says about it -----------------------------------------------------------------------

    def range_text(self) -> str:
        low, high = (f"{b:g}".replace("inf", "∞") for b in self.bounds)
        return f"{'(' if low.endswith('∞') else '['}{low}, {high}{')' if high.endswith('∞') else ']'}"

    def method_line(self) -> str:
        """One or two sentences saying how the intervals were computed (and where items were missing)."""
        parts = []
        if "items" in self.used:
            parts.append(f"Intervals: {CONFIDENCE:.0%} percentile bootstrap ({RESAMPLES:,} resamples, fixed random "
                         f"seed) over seeds and, within each seed, the {self.split} items of "
                         f"predictions_{self.split}.csv; differences between strategies are paired (same seeds, "
                         f"same {self.split} items), so every interval of {self.metric} stays within "
                         f"{self.range_text()}.")
        if "one seed" in self.used:
            parts.append("Where a strategy has one seed, its interval reflects the test items alone, not the "
                         "variation between seeds: run more seeds before trusting a verdict.")
        if "seeds" in self.used:
            cells = sorted(self.seed_only_cells)
            shown = ", ".join(f"{c} ({self.seed_only_cells[c]})" for c in cells[:3])
            more = f" and {len(cells) - 3} more" if len(cells) > 3 else ""
            parts.append(f"Intervals resampling seeds only ({CONFIDENCE:.0%} percentile bootstrap, clipped to "
                         f"{self.range_text()}) where items were unusable: {shown}{more}; with few seeds these "
                         "understate the uncertainty.")
        return " ".join(parts) or "No intervals: one seed per strategy and no usable predictions."
