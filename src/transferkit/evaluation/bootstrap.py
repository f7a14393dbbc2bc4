"""Percentile bootstrap intervals over seeds and test items, for metrics that are a function of a mean.

A comparison cell's score varies with the seed (split, initialisation, labelled subset) and with the finite
test set. Resampling both — first the seeds with replacement, then, within each drawn seed, its test items
with replacement — gives an interval for the mean over seeds that reflects both sources of noise. Percentile
intervals of a statistic that always lies in the metric's range (an accuracy in [0, 1], an RMSE >= 0) stay
in that range by construction, unlike mean ± t·sem over two or three seeds.

Resampling several columns with the same draws (two strategies scored on the same seeds and the same test
items) gives a paired interval for their difference.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
#: Base of every random stream, so a report is the same each time it is rebuilt.
BASE_SEED = 20240917
#: Above this many distinct item rows, resample indices; below, draw multinomial counts of the distinct rows
#: (the same distribution, far cheaper for 0/1 correctness).
_FEW_DISTINCT = 64
_CHUNK_CELLS = 2_000_000


@dataclass(frozen=True)
class ItemMetric:
    """A metric computed as `finish(mean of per-item values)`, so resampled items give resampled metrics."""

    per_item: Callable[[np.ndarray, np.ndarray], np.ndarray]
    finish: Callable[[np.ndarray], np.ndarray]
    numeric: bool  # targets and predictions are numbers (regression) rather than class names


ITEM_METRICS: dict[str, ItemMetric] = {
    "accuracy": ItemMetric(lambda t, p: (t == p).astype(float), lambda m: m, numeric=False),
    "rmse": ItemMetric(lambda t, p: (t - p) ** 2, np.sqrt, numeric=True),
    "mae": ItemMetric(lambda t, p: np.abs(t - p), lambda m: m, numeric=True),
}

#: The range every value of a metric lies in (the interval is clipped to it when only seeds are resampled).
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0), "precision": (0.0, 1.0), "recall": (0.0, 1.0),
    "rmse": (0.0, np.inf), "mae": (0.0, np.inf), "r2": (-np.inf, 1.0),
}


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval (NaN bounds: no interval, e.g. one seed and no items)."""

    estimate: float
    low: float
    high: float

    @property
    def known(self) -> bool:
        return self.low == self.low and self.high == self.high

    @property
    def excludes_zero(self) -> bool:
        return self.known and (self.low > 0 or self.high < 0)

    def text(self) -> str:
        return f"[{self.low:.3f}, {self.high:.3f}]" if self.known else "n/a (1 seed)"


def rng_for(*key: object) -> np.random.Generator:
    """A generator seeded by a stable hash of `key` (e.g. data size and strategies), independent of call order."""
    return np.random.default_rng([BASE_SEED, zlib.crc32("|".join(map(str, key)).encode("utf-8"))])


def resample_items(rows: np.ndarray, finish: Callable, rng: np.random.Generator, draws: int) -> np.ndarray:
    """`draws` bootstrap replicates of `finish(column means)` over the items (rows) of one seed.

    Args:
        rows: (items, columns) per-item values, one column per strategy scored on the same items.
        finish: maps means of per-item values to the metric (identity for accuracy, sqrt for RMSE).
        rng: the random stream.
        draws: how many replicates.

    Returns:
        (draws, columns) metric values.
    """
    n = len(rows)
    few = _distinct_rows(rows)
    out = np.empty((draws, rows.shape[1]))
    chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, draws, chunk):
        m = min(chunk, draws - start)
        if few is not None:
            distinct, counts = few
            means = rng.multinomial(n, counts / n, size=m) @ distinct / n
        else:
            means = rows[rng.integers(n, size=(m, n))].mean(axis=1)
        out[start:start + m] = finish(means)
    return out


def _distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct rows, their counts) when there are few of them (0/1 correctness), else None.

    Rows are coded column by column as integers (cheaper than `np.unique(axis=0)` on many rows).
    """
    codes, base, levels = np.zeros(len(rows), dtype=np.int64), 1, []
    for column in rows.T:
        values, inverse = np.unique(column, return_inverse=True)
        if len(values) > _FEW_DISTINCT:
            return None
        codes += inverse.reshape(-1) * base
        base *= len(values)
        levels.append(values)
    present, counts = np.unique(codes, return_counts=True)
    if len(present) > _FEW_DISTINCT:
        return None
    distinct, rest = np.empty((len(present), rows.shape[1])), present.copy()
    for j, values in enumerate(levels):
        distinct[:, j] = values[rest % len(values)]
        rest //= len(values)
    return distinct, counts


def over_seeds_and_items(samples: Sequence[np.ndarray], finish: Callable, rng: np.random.Generator,
                         resamples: int = RESAMPLES) -> np.ndarray:
    """Two-stage bootstrap of the mean over seeds: draw seeds with replacement, then items within each.

    Each drawn seed gets its own item resample, even when a seed is drawn twice in one replicate.

    Args:
        samples: one (items, columns) array per seed.
        finish: see `resample_items`.
        rng: the random stream.
        resamples: number of replicates.

    Returns:
        (resamples, columns): the mean over drawn seeds of each column's metric, per replicate.
    """
    k = len(samples)
    picks = rng.integers(k, size=(resamples, k))
    values = np.empty((resamples, k, samples[0].shape[1]))
    for seed, rows in enumerate(samples):
        chosen = picks == seed
        values[chosen] = resample_items(rows, finish, rng, int(chosen.sum()))
    return values.mean(axis=1)


def over_seeds(values: np.ndarray, rng: np.random.Generator, resamples: int = RESAMPLES) -> np.ndarray:
    """Bootstrap of the mean over seeds of per-seed values (seeds, columns): seeds drawn with replacement."""
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    picks = rng.integers(len(values), size=(resamples, len(values)))
    return values[picks].mean(axis=1)


def percentile(estimate: float, replicates: np.ndarray, bounds: tuple[float, float] = (-np.inf, np.inf),
               confidence: float = CONFIDENCE) -> Interval:
    """The percentile interval of 1-D bootstrap replicates, clipped to `bounds` (a no-op for a mean of values
    inside them; a guard for rounding)."""
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Interval(float(estimate), float(np.clip(low, *bounds)), float(np.clip(high, *bounds)))
