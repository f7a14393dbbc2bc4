"""Report figures as PNG bytes, drawn on matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

DPI = 110
#: Line styles and markers cycled per strategy, so lines that coincide (full and l2sp often do) stay visible.
STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ("-", "v"), ("--", "P"), (":", "X"), ("-.", "*")]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def data_efficiency(lines: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]], *,
                    metric: str, xlabel: str = "labels per class", chance: float | None = None) -> bytes:
    """Metric against data size, one line per strategy with its interval as (possibly asymmetric) error bars.

    Args:
        lines: strategy -> (x values, means, interval lows, interval highs; NaN where there is no interval).
        metric: y-axis label, e.g. "test accuracy".
        xlabel: x-axis label.
        chance: the metric of uniform guessing, drawn as a dotted line (None: not drawn).
    """
    fig = _figure(7, 4.2)
    ax = fig.add_subplot()
    xs_all = [x for xs, *_ in lines.values() for x in xs]
    log_x = bool(xs_all) and max(xs_all) / max(min(xs_all), 1e-9) >= 5
    for i, (strategy, (xs, means, lows, highs)) in enumerate(lines.items()):
        order = np.argsort(xs)
        xs, means = np.asarray(xs, float)[order], np.asarray(means, float)[order]
        below = np.nan_to_num(means - np.asarray(lows, float)[order]).clip(min=0)
        above = np.nan_to_num(np.asarray(highs, float)[order] - means).clip(min=0)
        style, marker = STYLES[i % len(STYLES)]
        ax.errorbar(_dodge(xs, i, len(lines), log_x), means, yerr=[below, above], linestyle=style, marker=marker,
                    capsize=4, label=strategy, color=f"C{i % 10}")
    if log_x:
        ax.set_xscale("log")
    if xs_all:  # ticks at the sizes measured, written plainly (not 2x10^1)
        from matplotlib.ticker import NullFormatter, NullLocator

        sizes = sorted(set(xs_all))
        ax.set_xticks(sizes, labels=[f"{x:g}" for x in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    _chance_line(ax, chance)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(f"Data efficiency: {metric} vs {xlabel} (mean, 95% interval)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def _chance_line(ax, chance: float | None) -> None:
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1.5, label=f"chance ({chance:.2f})")


def _dodge(xs: np.ndarray, index: int, count: int, log_x: bool) -> np.ndarray:
    """Shift each line a little sideways so error bars at the same data size do not hide each other."""
    offset = (index - (count - 1) / 2) * 0.015
    return xs * (1 + offset) if log_x else xs + offset * (np.ptp(xs) or 1.0)


Curves = dict[str, tuple[Sequence[int], Sequence[float]]]


def learning_curves(panels: dict[str, dict[str, Curves]], *, metric: str, chance: float | None = None) -> bytes:
    """Per data size (columns): the validation metric per epoch above, train and validation loss below.

    Args:
        panels: panel title -> strategy -> {"metric", "train loss", "val loss"} -> (1-based epochs, values);
            any of the three may be missing (a head fitted in one step logs no loss).
        metric: y-axis label of the top row, e.g. "val accuracy".
        chance: the metric of uniform guessing, drawn as a dotted line on the top row (None: not drawn).
    """
    from matplotlib.lines import Line2D

    strategies = list(dict.fromkeys(s for curves in panels.values() for s in curves))
    with_loss = any("train loss" in c or "val loss" in c for curves in panels.values() for c in curves.values())
    n, rows = max(len(panels), 1), 2 if with_loss else 1
    fig = _figure(min(4.2 * n, 13), 3.4 * rows)
    axes = fig.subplots(rows, n, squeeze=False)
    for column, (title, curves) in enumerate(panels.items()):
        top = axes[0][column]
        for strategy, series in curves.items():
            _curve(top, strategies.index(strategy), series.get("metric"), "-", strategy)
        _chance_line(top, chance)
        _epoch_axis(top, title, metric)
        if with_loss:
            bottom = axes[1][column]
            for strategy, series in curves.items():
                _curve(bottom, strategies.index(strategy), series.get("train loss"), "-", None)
                _curve(bottom, strategies.index(strategy), series.get("val loss"), "--", None)
            _epoch_axis(bottom, title, "loss")
    axes[0][0].legend(fontsize="small")
    if with_loss:
        kinds = [Line2D([], [], color="grey", linestyle="-", label="train loss"),
                 Line2D([], [], color="grey", linestyle="--", label="val loss")]
        axes[1][0].legend(handles=kinds, fontsize="small")
    return _png(fig)


def _curve(ax, index: int, series: tuple[Sequence[int], Sequence[float]] | None, style: str,
           label: str | None) -> None:
    if series is None:
        return
    epochs, values = series
    marker = STYLES[index % len(STYLES)][1]
    ax.plot(epochs, values, linestyle=style, marker=marker, markersize=4 if len(epochs) > 1 else 7,
            color=f"C{index % 10}", label=label)


def _epoch_axis(ax, title: str, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def confusion_matrix(matrix: np.ndarray, classes: Sequence[str], *, title: str) -> bytes:
    """A confusion matrix with counts in the cells (rows: true class, columns: predicted)."""
    size = min(2.5 + 0.45 * len(classes), 9)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, labels=list(classes), rotation=45 if max(map(len, classes)) > 3 else 0)
    ax.set_yticks(ticks, labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    if len(classes) <= 20:
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > threshold else "black")
    return _png(fig)


def predicted_vs_true(true: np.ndarray, predicted: np.ndarray, *, title: str) -> bytes:
    """Regression predictions against targets, with the line of perfect prediction."""
    fig = _figure(5.5, 5)
    ax = fig.add_subplot()
    ax.scatter(true, predicted, s=12, alpha=0.6)
    low, high = float(np.min([true.min(), predicted.min()])), float(np.max([true.max(), predicted.max()]))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="perfect")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)
