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


def data_efficiency(lines: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float]]], *,
                    metric: str, xlabel: str = "labels per class") -> bytes:
    """Metric against data size, one line per strategy with 95% CI error bars.

    Args:
        lines: strategy -> (x values, means, CI half-widths; NaN where a size has one seed).
        metric: y-axis label, e.g. "test accuracy".
        xlabel: x-axis label.
    """
    fig = _figure(7, 4.2)
    ax = fig.add_subplot()
    xs_all = [x for xs, _, _ in lines.values() for x in xs]
    log_x = bool(xs_all) and max(xs_all) / max(min(xs_all), 1e-9) >= 5
    for i, (strategy, (xs, means, halves)) in enumerate(lines.items()):
        order = np.argsort(xs)
        xs, means = np.asarray(xs, float)[order], np.asarray(means, float)[order]
        halves = np.nan_to_num(np.asarray(halves, float)[order])
        style, marker = STYLES[i % len(STYLES)]
        ax.errorbar(_dodge(xs, i, len(lines), log_x), means, yerr=halves, linestyle=style, marker=marker,
                    capsize=4, label=strategy)
    if log_x:
        ax.set_xscale("log")
    if xs_all:  # ticks at the sizes measured, written plainly (not 2x10^1)
        from matplotlib.ticker import NullFormatter, NullLocator

        sizes = sorted(set(xs_all))
        ax.set_xticks(sizes, labels=[f"{x:g}" for x in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(f"Data efficiency: {metric} vs {xlabel} (mean, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def _dodge(xs: np.ndarray, index: int, count: int, log_x: bool) -> np.ndarray:
    """Shift each line a little sideways so error bars at the same data size do not hide each other."""
    offset = (index - (count - 1) / 2) * 0.015
    return xs * (1 + offset) if log_x else xs + offset * (np.ptp(xs) or 1.0)


def learning_curves(panels: dict[str, dict[str, tuple[Sequence[int], Sequence[float]]]], *, metric: str) -> bytes:
    """One panel per data size: validation metric per epoch, one line per strategy (mean over seeds).

    Args:
        panels: panel title -> strategy -> (epochs, mean values).
        metric: y-axis label, e.g. "val accuracy".
    """
    from matplotlib.ticker import MaxNLocator

    n = max(len(panels), 1)
    fig = _figure(min(4.2 * n, 13), 3.8)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (title, curves) in zip(axes, panels.items()):
        for i, (strategy, (epochs, values)) in enumerate(curves.items()):
            style, marker = STYLES[i % len(STYLES)]
            ax.plot(epochs, values, linestyle=style, marker=marker, markersize=4 if len(epochs) > 1 else 7,
                    label=strategy)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return _png(fig)


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
