"""The comparison report: does transfer help here, and which strategy is best?

Per data size, each strategy's mean and 95% confidence interval (Student t) over seeds of the main
metric; the transfer benefit of each pretrained strategy over the from-scratch baseline, paired by
seed (same seed, same split); a data-efficiency plot, learning curves and the best run's confusion
matrix (classification) or predicted-vs-true scatter (regression).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transferkit.evaluation import plots
from transferkit.evaluation.metrics import main_metric
from transferkit.evaluation.render import Alert, Block, Heading, Image, Paragraph, Table, write
from transferkit.modelmeta import ModelMeta

CONFIDENCE = 0.95


def main_column(row: dict[str, Any] | pd.DataFrame) -> str:
    """`test/<main metric>`, or `val/<main metric>` when the runs have no test split."""
    task = row["task"] if isinstance(row, dict) else row["task"].iloc[0]
    metric = main_metric(task)[0]
    keys = row.keys() if isinstance(row, dict) else row.columns
    return f"test/{metric}" if f"test/{metric}" in keys else f"val/{metric}"


def higher_is_better(task: str) -> bool:
    return main_metric(task)[1] == "max"


def mean_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Mean and half-width of its t-distribution confidence interval (NaN half-width for one value)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) < 2:
        return float(x.mean()), float("nan")
    sem = x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(stats.t.ppf((1 + confidence) / 2, len(x) - 1) * sem)


def size_label(size: str) -> str:
    return "all labels" if size == "all" else f"{size} labels per class"


def summarize(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per (data size, strategy): seeds, mean, CI half-width, time, trainable parameters, best."""
    rows = []
    for (size, strategy), part in table.groupby(["train_per_class", "strategy"], sort=False):
        mean, half = mean_ci(part[column])
        x = part["labels_per_class"].mean()
        rows.append({"size": size, "strategy": strategy, "pretrained": bool(part["pretrained"].iloc[0]),
                     "seeds": len(part), "mean": mean, "half": half, "seconds": part["train_seconds"].mean(),
                     "trainable": int(part["trainable_params"].median()),
                     "x": x if x == x else part["n_train"].mean()})
    summary = pd.DataFrame(rows)
    better = higher_is_better(table["task"].iloc[0])
    best = summary.groupby("size", sort=False)["mean"].transform("max" if better else "min")
    summary["best"] = summary["mean"] == best
    return summary


def transfer_benefit(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Gain of each pretrained strategy over the first non-pretrained one (the baseline), paired by seed.

    The gain is signed so that positive means better (for error metrics: baseline minus strategy).
    """
    baselines = table.loc[~table["pretrained"].astype(bool), "strategy"].unique()
    if not len(baselines):
        return pd.DataFrame()
    pairs = [(s, baselines[0]) for s in table.loc[table["pretrained"].astype(bool), "strategy"].unique()]
    return _paired_gains(table, column, pairs, worse="negative transfer")


def adaptation_benefit(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Gain of each domain-adaptation strategy over its source-only baseline (`full`), paired by seed."""
    if "source_only_baseline" not in table:
        return pd.DataFrame()
    named = table.dropna(subset=["source_only_baseline"]).drop_duplicates("strategy")
    pairs = list(named[["strategy", "source_only_baseline"]].itertuples(index=False, name=None))
    return _paired_gains(table, column, pairs, worse="hurts")


def _paired_gains(table: pd.DataFrame, column: str, pairs: list[tuple[str, str]], *, worse: str) -> pd.DataFrame:
    """(strategy, baseline) gains per data size over the seeds both have, signed so positive is better.

    `worse` is the verdict of a strategy that does not beat its baseline.
    """
    sign = 1.0 if higher_is_better(table["task"].iloc[0]) else -1.0
    rows = []
    for size, part in table.groupby("train_per_class", sort=False):
        by_strategy = {s: runs.set_index("seed")[column] for s, runs in part.groupby("strategy", sort=False)}
        for strategy, baseline in pairs:
            if strategy not in by_strategy or baseline not in by_strategy:
                continue
            scores, base = by_strategy[strategy], by_strategy[baseline]
            seeds = scores.index.intersection(base.index)
            if not len(seeds):
                continue
            gain, half = mean_ci(sign * (scores[seeds] - base[seeds]))
            rows.append({"size": size, "strategy": strategy, "baseline": baseline, "seeds": len(seeds),
                         "gain": gain, "half": half, "verdict": _verdict(gain, half, worse)})
    return pd.DataFrame(rows)


def _verdict(gain: float, half: float, worse: str) -> str:
    if gain <= 0:
        return worse
    if half != half:
        return "helps (one seed: no interval)"
    return "helps" if gain - half > 0 else "helps, not significant"


def _interval(mean: float, half: float) -> str:
    return "n/a (1 seed)" if half != half else f"[{mean - half:.3f}, {mean + half:.3f}]"


# ---- blocks ----------------------------------------------------------------------------------------------------

def _size_tables(summary: pd.DataFrame, metric: str) -> list[Block]:
    blocks: list[Block] = [Heading("Results per data size")]
    for size, part in summary.groupby("size", sort=False):
        rows = [[("★ " if r.best else "") + r.strategy, str(r.seeds), f"{r.mean:.3f}", _interval(r.mean, r.half),
                 f"{r.seconds:.1f}", f"{r.trainable:,}"] for r in part.itertuples()]
        marked = {i for i, r in enumerate(part.itertuples()) if r.best}
        blocks.append(Table(["strategy", "seeds", f"{metric} (mean)", "95% CI", "train time (s)",
                             "trainable params"], rows, marked, caption=size_label(size)))
    return blocks


def _benefit_blocks(benefit: pd.DataFrame, metric: str, adapting: bool = False) -> list[Block]:
    blocks: list[Block] = [Heading("Transfer benefit")]
    if benefit.empty:
        text = ("No baseline trained from scratch in this comparison; add the `scratch` strategy to measure "
                "what pretraining brings.")
        if adapting:
            text += " The domain-adaptation strategies are measured against their source-only baseline below."
        return blocks + [Paragraph(text)]
    baseline = benefit["baseline"].iloc[0]
    blocks.append(Paragraph(f"Gain in {metric} of each pretrained strategy over {baseline} (same seeds, same "
                            "splits; positive is better), with its 95% confidence interval."))
    rows = [[size_label(r.size), r.strategy, f"{r.gain:+.3f}", _interval(r.gain, r.half), str(r.seeds), r.verdict]
            for r in benefit.itertuples()]
    blocks.append(Table(["data size", "strategy", "gain", "95% CI", "seeds", "verdict"], rows))
    for r in benefit[benefit["verdict"] == "negative transfer"].itertuples():
        blocks.append(Alert(f"Negative transfer: {r.strategy} does not beat {baseline} at {size_label(r.size)} "
                            f"(gain {r.gain:+.3f} {metric}); the pretrained features do not help here."))
    return blocks


def _verdict_lines(summary: pd.DataFrame, benefit: pd.DataFrame, metric: str,
                   adaptation: pd.DataFrame | None = None) -> list[Block]:
    lines: list[Block] = [Heading("Summary")]
    for size, part in summary.groupby("size", sort=False):
        best = part[part["best"]].iloc[0]
        text = f"{size_label(size)}: best is {best.strategy} ({metric} {best['mean']:.3f}"
        text += ")" if best.half != best.half else f" ± {best.half:.3f})"
        for what, gains in (("transfer", benefit), ("adaptation", adaptation)):
            gains = gains[gains["size"] == size] if gains is not None and not gains.empty else None
            if gains is not None and len(gains):
                top = gains.loc[gains["gain"].idxmax()]
                text += f"; {what} gain over {top.baseline}: {top.gain:+.3f} ({top.strategy})"
        lines.append(Paragraph(text + "."))
    return lines


def _adaptation_blocks(table: pd.DataFrame, adaptation: pd.DataFrame, options: dict, metric: str) -> list[Block]:
    """Domain adaptation: gain over the source-only baseline, and the domain gap before and after training."""
    adapting = sorted(set(table.dropna(subset=["source_only_baseline"])["strategy"]))
    baselines = sorted(set(table.dropna(subset=["source_only_baseline"])["source_only_baseline"]))
    blocks: list[Block] = [Heading("Domain adaptation"), Paragraph(
        f"Target domain: {options.get('target_data')}, unlabeled in training. Each adaptation strategy "
        f"({', '.join(adapting)}) is compared with {' / '.join(baselines)} fine-tuned on the source data alone "
        f"(source-only), on the same seeds and splits; {metric} is scored on --test-data "
        f"({options.get('test_data')}). Checkpoints and early stopping read the source validation split only: "
        "target labels never choose a model.")]
    if adaptation.empty:
        return blocks + [Alert(f"No source-only baseline finished: add {' / '.join(baselines)} to --strategies "
                               "to measure what adaptation brings.")]
    rows = [[size_label(r.size), r.strategy, r.baseline, f"{r.gain:+.3f}", _interval(r.gain, r.half), str(r.seeds),
             r.verdict] for r in adaptation.itertuples()]
    blocks.append(Table(["data size", "strategy", "source-only", "gain", "95% CI", "seeds", "verdict"], rows))
    before, after = "domain_gap/proxy_a_distance_before", "domain_gap/proxy_a_distance_after"
    if before in table and after in table:
        gaps = table.dropna(subset=[after]).groupby(["train_per_class", "strategy"], sort=False)[[before, after]]
        rows = [[size_label(size), strategy, f"{r[before]:.3f}", f"{r[after]:.3f}"]
                for (size, strategy), r in gaps.mean().iterrows()]
        blocks += [Paragraph("Domain gap: proxy A-distance (0: a linear classifier cannot tell the domains apart, "
                             "2: it always can) between source and target features of the pretrained backbone "
                             "(before) and of the trained one (after), mean over seeds."),
                   Table(["data size", "strategy", "before", "after"], rows)]
    return blocks


def _curves(folder: Path, table: pd.DataFrame, column: str) -> dict[str, dict]:
    panels: dict[str, dict] = {}
    for (size, strategy), part in table.groupby(["train_per_class", "strategy"], sort=False):
        frames = [pd.read_csv(folder / f / "history.csv") for f in part["folder"]
                  if (folder / f / "history.csv").is_file()]
        frames = [f[["epoch", column]].dropna() for f in frames if column in f]
        if frames:
            mean = pd.concat(frames).groupby("epoch")[column].mean()
            panels.setdefault(size_label(size), {})[strategy] = (list(mean.index), list(mean.values))
    return panels


def _best_run_figure(folder: Path, table: pd.DataFrame, column: str) -> Image | None:
    better = higher_is_better(table["task"].iloc[0])
    best = table.loc[table[column].idxmax() if better else table[column].idxmin()]
    split, metric = column.split("/")
    path = folder / best["folder"] / f"predictions_{split}.csv"
    if not path.is_file():
        return None
    preds = pd.read_csv(path, dtype={"target": str, "prediction": str})
    title = f"{best['cell']} ({split} {metric} {best[column]:.3f})"
    if best["task"] != "classification":
        png = plots.predicted_vs_true(preds["target"].astype(float).to_numpy(),
                                      preds["prediction"].astype(float).to_numpy(), title=title)
        return Image("best-run", png, f"Predicted vs true values of the best run, {title}")
    from sklearn.metrics import confusion_matrix

    classes = [str(c) for c in ModelMeta.from_file(folder / best["folder"]).classes]
    matrix = confusion_matrix(preds["target"], preds["prediction"], labels=classes)
    return Image("best-run", plots.confusion_matrix(matrix, classes, title=title),
                 f"Confusion matrix of the best run, {title}")


def _figures(folder: Path, table: pd.DataFrame, summary: pd.DataFrame, column: str, metric: str) -> list[Block]:
    lines = {s: (list(p["x"]), list(p["mean"]), list(p["half"])) for s, p in summary.groupby("strategy", sort=False)}
    classification = table["task"].iloc[0] == "classification"
    blocks: list[Block] = [Heading("Data efficiency"), Image(
        "data-efficiency", plots.data_efficiency(lines, metric=metric,
                                                 xlabel="labels per class" if classification else "training samples"),
        f"{metric} against the number of labels (mean over seeds, 95% CI), one line per strategy")]
    val_column = "val/" + column.split("/")[1]
    panels = _curves(folder, table, val_column)
    if panels:
        blocks += [Heading("Learning curves"), Image(
            "learning-curves", plots.learning_curves(panels, metric=val_column.replace("/", " ")),
            f"{val_column} per epoch (mean over seeds); a single point is a head fitted in one step")]
    best = _best_run_figure(folder, table, column)
    if best is not None:
        blocks += [Heading("Best run"), best]
    return blocks


def build_blocks(folder: Path, spec: dict[str, Any], table: pd.DataFrame) -> list[Block]:
    """Every section of the report, in reading order."""
    column = main_column(table)
    metric = column.replace("/", " ")
    summary, benefit = summarize(table, column), transfer_benefit(table, column)
    adaptation = adaptation_benefit(table, column)
    adapting = "source_only_baseline" in table and table["source_only_baseline"].notna().any()
    options = spec["options"]
    total = len(spec["strategies"]) * len(spec["train_per_class"]) * len(spec["seeds"])
    better = "higher" if higher_is_better(table["task"].iloc[0]) else "lower"
    shared = ", ".join(f"{k}={v}" for k, v in options.items() if k not in ("data", "model"))
    blocks: list[Block] = [
        Heading(f"Transfer comparison: {options.get('model')} on {options.get('data')}", 1),
        Paragraph(f"{len(table)} of {total} cells finished: strategies {', '.join(spec['strategies'])}; "
                  f"labels per class {', '.join(map(str, spec['train_per_class']))}; seeds "
                  f"{', '.join(map(str, spec['seeds']))}. Main metric: {metric} ({better} is better), mean "
                  f"and {CONFIDENCE:.0%} confidence interval (t-distribution) over seeds."
                  + (f" Shared options: {shared}." if shared else "")),
    ]
    if len(table) < total:
        blocks.append(Alert(f"{total - len(table)} cells are not finished; re-run the same `transferkit compare` "
                            "command to finish them (finished cells are skipped)."))
    blocks += _verdict_lines(summary, benefit, metric, adaptation)
    blocks += _size_tables(summary, metric)
    blocks += _benefit_blocks(benefit, metric, adapting)
    if adapting:
        blocks += _adaptation_blocks(table, adaptation, options, metric)
    blocks += _figures(folder, table, summary, column, metric)
    return blocks


def write_report(folder: Path, spec: dict[str, Any], table: pd.DataFrame) -> tuple[Path, Path]:
    """Write report.md (+ figures/) and report.html for the finished cells in `table`."""
    blocks = build_blocks(Path(folder), spec, table)
    options = spec["options"]
    return write(blocks, Path(folder), f"transferkit comparison: {options.get('model')} on {options.get('data')}")
