"""The comparison report: does transfer help here, and which strategy is best?

Per data size, each strategy's mean over seeds of the main metric with a bootstrap interval over seeds and
test items (`uncertainty`); a strategy is marked best only when the paired interval of its difference from
every other strategy excludes 0, otherwise the leaders are "tied". Gains (transfer over the from-scratch
baseline, adaptation over the source-only one) are paired by seed and test item and worded the same way for
both signs. Figures: data efficiency, learning curves (validation metric beside train and validation loss)
and the best run on validation data's confusion matrix (classification) or predicted-vs-true scatter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from transferkit.evaluation import plots
from transferkit.evaluation.bootstrap import Interval
from transferkit.evaluation.metrics import main_metric
from transferkit.evaluation.render import Alert, Block, Heading, Image, Paragraph, Table, write
from transferkit.evaluation.uncertainty import Uncertainty
from transferkit.errors import RunFolderError
from transferkit.modelmeta import ModelMeta


def main_column(row: dict[str, Any] | pd.DataFrame) -> str:
    """`test/<main metric>`, or `val/<main metric>` when the runs have no test split."""
    task = row["task"] if isinstance(row, dict) else row["task"].iloc[0]
    metric = main_metric(task)[0]
    keys = row.keys() if isinstance(row, dict) else row.columns
    return f"test/{metric}" if f"test/{metric}" in keys else f"val/{metric}"


def higher_is_better(task: str) -> bool:
    return main_metric(task)[1] == "max"


def uncertainty_for(folder: Path, table: pd.DataFrame) -> Uncertainty:
    """The interval maker of a comparison table's main metric."""
    return Uncertainty(folder, main_column(table), higher_is_better=higher_is_better(table["task"].iloc[0]))


def size_label(size: str) -> str:
    return "all labels" if size == "all" else f"{size} labels per class"


def summarize(table: pd.DataFrame, stats: Uncertainty) -> pd.DataFrame:
    """One row per (data size, strategy): seeds, mean and interval, time, trainable parameters, rank.

    `vs_top` is the paired difference from the strategy with the best mean at that size (None for that one);
    `tied` marks every strategy whose difference from it has an interval that includes 0 (the top one too,
    when any other is tied with it); `best` is the top strategy when nothing is tied with it.
    """
    rows = []
    for (size, strategy), part in table.groupby(["train_per_class", "strategy"], sort=False):
        score = stats.score(part, (size, strategy))
        x = part["labels_per_class"].mean()
        rows.append({"size": size, "strategy": strategy, "pretrained": bool(part["pretrained"].iloc[0]),
                     "seeds": len(part), "mean": score.estimate, "interval": score,
                     "seconds": part["train_seconds"].mean(), "trainable": int(part["trainable_params"].median()),
                     "x": x if x == x else part["n_train"].mean()})
    summary = pd.DataFrame(rows)
    ranked = [_rank(table, part, stats) for _, part in summary.groupby("size", sort=False)]
    return pd.concat(ranked).loc[summary.index]


def _rank(table: pd.DataFrame, part: pd.DataFrame, stats: Uncertainty) -> pd.DataFrame:
    part = part.copy()
    top = part["mean"].idxmax() if stats.sign > 0 else part["mean"].idxmin()
    runs = table[table["train_per_class"] == part.at[top, "size"]]
    top_runs = runs[runs["strategy"] == part.at[top, "strategy"]]
    part["vs_top"] = [None if i == top else stats.difference(
        runs[runs["strategy"] == r.strategy], top_runs, (r.size, r.strategy, "vs", part.at[top, "strategy"]))
        for i, r in part.iterrows()]
    part["tied"] = [i != top and (d is None or not d.excludes_zero) for i, d in part["vs_top"].items()]
    part.loc[top, "tied"] = bool(part["tied"].any())
    part["best"] = [i == top and not part["tied"].any() for i in part.index]
    return part


def transfer_benefit(table: pd.DataFrame, stats: Uncertainty) -> pd.DataFrame:
    """Gain of each pretrained strategy over the first non-pretrained one (the baseline), paired by seed.

    The gain is signed so that positive means better (for error metrics: baseline minus strategy).
    """
    baselines = table.loc[~table["pretrained"].astype(bool), "strategy"].unique()
    if not len(baselines):
        return pd.DataFrame()
    pairs = [(s, baselines[0]) for s in table.loc[table["pretrained"].astype(bool), "strategy"].unique()]
    return _paired_gains(table, stats, pairs, worse="negative transfer")


def adaptation_benefit(table: pd.DataFrame, stats: Uncertainty) -> pd.DataFrame:
    """Gain of each domain-adaptation strategy over its source-only baseline (`full`), paired by seed."""
    if "source_only_baseline" not in table:
        return pd.DataFrame()
    named = table.dropna(subset=["source_only_baseline"]).drop_duplicates("strategy")
    pairs = list(named[["strategy", "source_only_baseline"]].itertuples(index=False, name=None))
    return _paired_gains(table, stats, pairs, worse="hurts")


def _paired_gains(table: pd.DataFrame, stats: Uncertainty, pairs: list[tuple[str, str]], *,
                  worse: str) -> pd.DataFrame:
    """(strategy, baseline) gains per data size over the seeds both have, signed so positive is better.

    `worse` is the verdict of a strategy whose whole interval lies below its baseline.
    """
    rows = []
    for size, part in table.groupby("train_per_class", sort=False):
        by_strategy = dict(tuple(part.groupby("strategy", sort=False)))
        for strategy, baseline in pairs:
            if strategy not in by_strategy or baseline not in by_strategy:
                continue
            gain = stats.difference(by_strategy[strategy], by_strategy[baseline], (size, strategy, "vs", baseline))
            if gain is None:
                continue
            seeds = len(set(by_strategy[strategy]["seed"]) & set(by_strategy[baseline]["seed"]))
            rows.append({"size": size, "strategy": strategy, "baseline": baseline, "seeds": seeds,
                         "gain": gain.estimate, "interval": gain, "verdict": verdict(gain, worse)})
    return pd.DataFrame(rows)


def verdict(gain: Interval, worse: str = "hurts") -> str:
    """"helps" or `worse` only when the interval excludes 0, the same rule for both signs."""
    if not gain.known:
        return "no interval (one seed)"
    if gain.low > 0:
        return "helps"
    if gain.high < 0:
        return worse
    return "no clear difference"


# ---- blocks ----------------------------------------------------------------------------------------------------

def _rank_text(r) -> str:
    if r.best:
        return "best"
    if r.tied:
        return "tied for best"
    return "top" if r.vs_top is None else "below top"


def _size_caption(size: str, part: pd.DataFrame) -> str:
    best, tied = part[part["best"]], part[part["tied"]]
    if len(best):
        return (f"{size_label(size)}: ★ {best['strategy'].iloc[0]} is best (the paired interval of its difference "
                "from every other strategy excludes 0)")
    return (f"{size_label(size)}: tied for best: {', '.join(tied['strategy'])} (the paired interval of the "
            "difference from the top mean includes 0)")


def _size_tables(summary: pd.DataFrame, metric: str) -> list[Block]:
    blocks: list[Block] = [Heading("Results per data size")]
    for size, part in summary.groupby("size", sort=False):
        rows = [[("★ " if r.best else "") + r.strategy, str(r.seeds), f"{r.mean:.3f}", r.interval.text(),
                 "—" if r.vs_top is None else f"{r.vs_top.estimate:+.3f} {r.vs_top.text()}", _rank_text(r),
                 f"{r.seconds:.1f}", f"{r.trainable:,}"] for r in part.itertuples()]
        marked = {i for i, r in enumerate(part.itertuples()) if r.best}
        tied = {i for i, r in enumerate(part.itertuples()) if r.tied}
        blocks.append(Table(["strategy", "seeds", f"{metric} (mean)", "95% interval", "vs top (paired 95% interval)",
                             "rank", "train time (s)", "trainable params"], rows, marked,
                            caption=_size_caption(size, part), tied=tied))
    return blocks


def _gain_row(r) -> list[str]:
    return [f"{r.gain:+.3f}", r.interval.text(), str(r.seeds), r.verdict]


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
                            "test items; positive is better), with its paired 95% interval: \"helps\" or "
                            "\"negative transfer\" only when the interval excludes 0."))
    rows = [[size_label(r.size), r.strategy, *_gain_row(r)] for r in benefit.itertuples()]
    blocks.append(Table(["data size", "strategy", "gain", "95% interval", "seeds", "verdict"], rows))
    for r in benefit[benefit["verdict"] == "negative transfer"].itertuples():
        blocks.append(Alert(f"Negative transfer: {r.strategy} does worse than {baseline} at {size_label(r.size)} "
                            f"(gain {r.gain:+.3f} {r.interval.text()} {metric}, the whole interval below 0); the "
                            "pretrained features do not help here."))
    return blocks


def _leaders(part: pd.DataFrame, metric: str) -> str:
    best = part[part["best"]]
    if len(best):
        r = best.iloc[0]
        return f"best is {r.strategy} ({metric} {r['mean']:.3f} {r.interval.text()})"
    tied = part[part["tied"]]
    return f"tied for best in {metric}: " + ", ".join(f"{r.strategy} ({r.mean:.3f} {r.interval.text()})"
                                                      for r in tied.itertuples())


def _verdict_lines(summary: pd.DataFrame, benefit: pd.DataFrame, metric: str,
                   adaptation: pd.DataFrame | None = None) -> list[Block]:
    lines: list[Block] = [Heading("Summary")]
    for size, part in summary.groupby("size", sort=False):
        text = f"{size_label(size)}: {_leaders(part, metric)}"
        for what, gains in (("transfer", benefit), ("adaptation", adaptation)):
            gains = gains[gains["size"] == size] if gains is not None and not gains.empty else None
            if gains is not None and len(gains):
                top = gains.loc[gains["gain"].idxmax()]
                text += (f"; {what} gain over {top.baseline}: {top.gain:+.3f} {top.interval.text()} "
                         f"({top.strategy}, {top.verdict})")
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
    rows = [[size_label(r.size), r.strategy, r.baseline, *_gain_row(r)] for r in adaptation.itertuples()]
    blocks.append(Table(["data size", "strategy", "source-only", "gain", "95% interval", "seeds", "verdict"], rows))
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


def _curves(folder: Path, table: pd.DataFrame, metric_column: str) -> dict[str, dict]:
    """size label -> strategy -> {"metric" | "train loss" | "val loss": (1-based epochs, mean over seeds)}."""
    wanted = {metric_column: "metric", "train/loss": "train loss", "val/loss": "val loss"}
    panels: dict[str, dict] = {}
    for (size, strategy), part in table.groupby(["train_per_class", "strategy"], sort=False):
        frames = [pd.read_csv(folder / f / "history.csv") for f in part["folder"]
                  if (folder / f / "history.csv").is_file()]
        frames = [f for f in frames if "epoch" in f]
        if not frames:
            continue
        history = pd.concat(frames)
        history["epoch"] = history["epoch"] + 1  # Lightning counts epochs from 0, readers from 1
        series = {}
        for column, name in wanted.items():
            if column in history:
                mean = history[["epoch", column]].dropna().groupby("epoch")[column].mean()
                if len(mean):
                    series[name] = ([int(e) for e in mean.index], list(mean.values))
        if series:
            panels.setdefault(size_label(size), {})[strategy] = series
    return panels


def _classes(folder: Path, row: pd.Series) -> list[str]:
    """The class names a cell's model predicts ([] when its model folder is missing or unreadable)."""
    try:
        return [str(c) for c in ModelMeta.from_file(folder / row["folder"]).classes or []]
    except RunFolderError:
        return []


def _chance(folder: Path, table: pd.DataFrame, metric: str) -> float | None:
    """Accuracy of guessing uniformly among the classes (1 / number of classes), for accuracy panels."""
    if metric != "accuracy" or table["task"].iloc[0] != "classification":
        return None
    classes = _classes(folder, table.iloc[0])
    return 1 / len(classes) if classes else None


def best_run_on_validation(table: pd.DataFrame, column: str) -> pd.Series | None:
    """The run with the best validation score of the main metric (first in grid order on a tie).

    Test scores never choose it: the best test score of many runs overstates what the chosen run will do.
    None when the runs have no validation score.
    """
    val_column = "val/" + column.split("/")[1]
    if val_column not in table or table[val_column].isna().all():
        return None
    scores = table[val_column]
    return table.loc[scores.idxmax() if higher_is_better(table["task"].iloc[0]) else scores.idxmin()]


def _best_run_blocks(folder: Path, table: pd.DataFrame, column: str) -> list[Block]:
    best = best_run_on_validation(table, column)
    if best is None:
        return [Heading("Best run"), Paragraph("No validation scores: no best run is shown (choosing one on test "
                                               "data would overstate it).")]
    split, metric = column.split("/")
    path = folder / best["folder"] / f"predictions_{split}.csv"
    if not path.is_file():
        return []
    preds = pd.read_csv(path, dtype={"target": str, "prediction": str})
    direction = "highest" if higher_is_better(best["task"]) else "lowest"
    chosen = (f"{best['cell']}, chosen on validation data (the {direction} val {metric} of all cells, "
              f"{best['val/' + metric]:.3f}; ties go to the first in grid order), never on test")
    shown = (f"shown on the test split, where it scores test {metric} {best[column]:.3f}" if split == "test" else
             "shown on the validation split that chose it (no test split), so its score there is optimistic")
    title = f"{best['cell']} (chosen on val {metric} {best['val/' + metric]:.3f})"
    if best["task"] != "classification":
        png = plots.predicted_vs_true(preds["target"].astype(float).to_numpy(),
                                      preds["prediction"].astype(float).to_numpy(), title=title)
        return [Heading("Best run"), Image("best-run", png, f"Predicted vs true values of the best run: {chosen}; "
                                                            f"{shown}.")]
    from sklearn.metrics import confusion_matrix

    classes = _classes(folder, best)
    matrix = confusion_matrix(preds["target"], preds["prediction"], labels=classes)
    return [Heading("Best run"), Image("best-run", plots.confusion_matrix(matrix, classes, title=title),
                                       f"Confusion matrix of the best run: {chosen}; {shown}.")]


def _figures(folder: Path, table: pd.DataFrame, summary: pd.DataFrame, column: str, metric: str) -> list[Block]:
    lines = {s: (list(p["x"]), list(p["mean"]), [i.low for i in p["interval"]], [i.high for i in p["interval"]])
             for s, p in summary.groupby("strategy", sort=False)}
    classification = table["task"].iloc[0] == "classification"
    chance = _chance(folder, table, column.split("/")[1])
    blocks: list[Block] = [Heading("Data efficiency"), Image(
        "data-efficiency", plots.data_efficiency(lines, metric=metric, chance=chance,
                                                 xlabel="labels per class" if classification else "training samples"),
        f"{metric} against the number of labels (mean over seeds, 95% bootstrap interval), one line per strategy"
        + ("; dotted: chance level" if chance else ""))]
    val_column = "val/" + column.split("/")[1]
    panels = _curves(folder, table, val_column)
    if panels:
        blocks += [Heading("Learning curves"), Image(
            "learning-curves", plots.learning_curves(panels, metric=val_column.replace("/", " "),
                                                     chance=_chance(folder, table, val_column.split("/")[1])),
            f"Per epoch (from 1, mean over seeds): {val_column.replace('/', ' ')} above, train loss (solid) and "
            "val loss (dashed) below; a single point is a head fitted in one step (no loss logged)"
            + ("; dotted: chance level" if chance else ""))]
    return blocks + _best_run_blocks(folder, table, column)


def build_blocks(folder: Path, spec: dict[str, Any], table: pd.DataFrame) -> list[Block]:
    """Every section of the report, in reading order."""
    column = main_column(table)
    metric = column.replace("/", " ")
    stats = uncertainty_for(folder, table)
    summary, benefit = summarize(table, stats), transfer_benefit(table, stats)
    adaptation = adaptation_benefit(table, stats)
    adapting = "source_only_baseline" in table and table["source_only_baseline"].notna().any()
    options = spec["options"]
    total = len(spec["strategies"]) * len(spec["train_per_class"]) * len(spec["seeds"])
    better = "higher" if higher_is_better(table["task"].iloc[0]) else "lower"
    shared = ", ".join(f"{k}={v}" for k, v in options.items() if k not in ("data", "model"))
    blocks: list[Block] = [
        Heading(f"Transfer comparison: {options.get('model')} on {options.get('data')}", 1),
        Paragraph(f"{len(table)} of {total} cells finished: strategies {', '.join(spec['strategies'])}; "
                  f"labels per class {', '.join(map(str, spec['train_per_class']))}; seeds "
                  f"{', '.join(map(str, spec['seeds']))}. Main metric: {metric} ({better} is better), mean over seeds."
                  + (f" Shared options: {shared}." if shared else "")),
        Paragraph(stats.method_line()),
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
