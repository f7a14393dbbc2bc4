"""Compare strategies over a grid of labels per class and seeds; resume, comparison.csv, report.

Layout of a comparison folder:

    <out>/comparison.yaml   the grid and the options every cell shares (what makes it "this" comparison)
    <out>/comparison.csv    one row per finished cell: every number of its metrics.json
    <out>/report.html       self-contained report (images embedded); report.md + figures/ alongside
    <out>/cells/<strategy>-n<N|all>-seed<k>/   one ordinary run folder per cell
    <out>/feature-cache/    frozen-backbone features, computed once and shared by every cell
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from transferkit import tracking
from transferkit.config import RunConfig, atomic_write_text, load_yaml, save_yaml
from transferkit.errors import ConfigError, RunFolderError
from transferkit.evaluation.report import main_column, write_report
from transferkit.locks import LOCK_FILE, hold_lock
from transferkit.modelmeta import ModelMeta
from transferkit.options import build_config
from transferkit.strategies import STRATEGIES, Strategy
from transferkit.training import fit as engine
from transferkit.training.plan import complete_config, load_splits
from transferkit.workflows.progress import overall_bar

SPEC_FILE = "comparison.yaml"
TABLE_FILE = "comparison.csv"
FORMAT_VERSION = 1
ALL = "all"
#: Options that are grid axes or places, not settings shared by the cells.
_AXES = ("strategy", "train_per_class", "seed", "out")


@dataclass(frozen=True)
class Cell:
    """One run of the grid: a strategy at a number of labels per class (None: all) and a seed."""

    strategy: str
    train_per_class: int | None
    seed: int

    @property
    def size(self) -> str:
        return ALL if self.train_per_class is None else str(self.train_per_class)

    @property
    def name(self) -> str:
        return f"{self.strategy}-n{self.size}-seed{self.seed}"


@dataclass
class Comparison:
    """A comparison folder: its grid, its comparison.csv table and the report files."""

    folder: Path
    spec: dict[str, Any]
    table: Any  # pandas.DataFrame, one row per finished cell
    report_html: Path
    report_md: Path

    @property
    def complete(self) -> bool:
        return len(self.table) == len(grid(self.spec))


# ---- parsing the grid ------------------------------------------------------------------------------------------

def _items(value: str | Iterable, what: str) -> list:
    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else list(value)
    items = [i for i in items if i not in ("", None)] if isinstance(value, str) else items
    if not items:
        raise ConfigError(f"--{what} is empty; give a comma-separated list.")
    return items


def parse_strategies(value: str | Sequence[str]) -> list[str]:
    """Strategy names from "a,b,c" or a list; UnknownNameError (with close matches) for a wrong one."""
    names = _items(value, "strategies")
    for name in names:
        STRATEGIES.get(name)
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"--strategies lists {', '.join(duplicated)} more than once.")
    return names


def parse_sizes(value: str | int | None | Sequence) -> list[int | None]:
    """Labels per class from "10,50,all" or a list of ints and "all"/None (None: every label)."""
    if value is None or isinstance(value, int):
        value = [value]
    sizes = []
    for item in _items(value, "train-per-class"):
        if item is None or str(item).lower() == ALL:
            sizes.append(None)
            continue
        try:
            number = int(str(item))
        except ValueError:
            number = 0
        if number < 1:
            raise ConfigError(f"--train-per-class takes positive integers or 'all', got {item!r} "
                              "(e.g. --train-per-class 10,50,all).")
        sizes.append(number)
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"--train-per-class lists a size more than once: {value!r}.")
    return sizes


def parse_seeds(value: int | str | Sequence[int]) -> list[int]:
    """Seeds from a count (3 -> 0, 1, 2) or an explicit list ("0,5,7" or [0, 5, 7])."""
    if isinstance(value, str) and "," not in value:
        value = value.strip()
    if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        count = int(value)
        if count < 1:
            raise ConfigError(f"--seeds must be at least 1 (the number of seeds), got {count}; "
                              "3 or more give meaningful confidence intervals.")
        return list(range(count))
    try:
        seeds = [int(str(s)) for s in _items(value, "seeds")]
    except ValueError:
        raise ConfigError(f"--seeds takes a count (3) or a list of integers (0,5,7), got {value!r}.") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds must list distinct non-negative integers, got {value!r}.")
    return seeds


def grid(spec: dict[str, Any]) -> list[Cell]:
    """Every cell of a comparison, by data size, then strategy, then seed."""
    sizes = [None if s == ALL else s for s in spec["train_per_class"]]
    return [Cell(strategy, size, seed) for size in sizes for strategy in spec["strategies"]
            for seed in spec["seeds"]]


# ---- options shared by the cells -------------------------------------------------------------------------------

def shared_options(config: RunConfig | str | Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """The fit options of every cell: the config file's, overridden by keywords; strategy options flattened."""
    if isinstance(config, RunConfig):
        base = config.to_dict()
    else:
        base = load_yaml(config) if config is not None else {}
    base = {k: v for k, v in base.items() if v is not None}
    base.update(base.pop("strategy_options", None) or {})
    for axis in ("strategy", "seed"):
        if options.get(axis) is not None:
            raise ConfigError(f"compare takes {axis}s=..., not {axis}=... (every cell gets one {axis} of the list).")
    base.update({k: v for k, v in options.items() if v is not None})
    return {k: v for k, v in base.items() if k not in _AXES}


def _strategy_fields(strategy: str) -> set[str]:
    return {f.name for f in fields(STRATEGIES.get(strategy).config_class)}


def route_options(options: dict[str, Any], strategies: list[str]) -> dict[str, dict[str, Any]]:
    """Options per strategy: run options for all, each strategy option only where that strategy has it."""
    run_fields = {f.name for f in fields(RunConfig)}
    unused = [k for k in options if k not in run_fields and not any(k in _strategy_fields(s) for s in strategies)]
    if unused:
        raise ConfigError(f"Option {unused[0]!r} applies to none of the strategies compared "
                          f"({', '.join(strategies)}); drop it or add a strategy that takes it.")
    return {s: {k: v for k, v in options.items() if k in run_fields or k in _strategy_fields(s)}
            for s in strategies}


def cell_config(spec: dict[str, Any], cell: Cell, folder: Path) -> tuple[RunConfig, Strategy]:
    """The completed RunConfig of one cell (strategy defaults and tracker store filled in) and its strategy.

    Built once, before anything trains (so a bad option stops the whole grid), and handed to fit as is.
    """
    options = route_options(spec["options"], spec["strategies"])[cell.strategy]
    options.setdefault("feature_cache", str(folder / "feature-cache"))
    options.setdefault("experiment", folder.resolve().name)
    config = build_config(None, **options, strategy=cell.strategy, train_per_class=cell.train_per_class,
                          seed=cell.seed, out=str(folder / "cells" / cell.name))
    config, strategy = complete_config(config)
    return tracking.resolve(config, root=folder), strategy


# ---- the comparison folder -------------------------------------------------------------------------------------

def _normalised(spec: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(yaml.safe_dump(spec, sort_keys=True))


def _flat(spec: dict[str, Any]) -> dict[str, Any]:
    options = spec.get("options") or {}
    return {**{k: v for k, v in spec.items() if k != "options"}, **{f"--{k.replace('_', '-')}": v
                                                                  for k, v in options.items()}}


def check_folder(folder: Path, spec: dict[str, Any]) -> None:
    """Refuse an --out holding anything but this same comparison; nothing there is touched."""
    if not folder.exists() or not any(p.name != LOCK_FILE for p in folder.iterdir()):
        return
    saved_path = folder / SPEC_FILE
    if not saved_path.is_file():
        raise RunFolderError(f"Output folder {folder} already holds other files (no {SPEC_FILE}); "
                             "choose another --out for this comparison.")
    saved, wanted = _flat(load_yaml(saved_path)), _flat(_normalised(spec))
    differing = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if differing:
        details = "; ".join(f"{k}: {saved.get(k)!r} there, {wanted.get(k)!r} now" for k in differing)
        raise RunFolderError(f"Output folder {folder} holds a different comparison ({details}); "
                             "re-run with the same options to resume it, or choose another --out.")


def load_spec(folder: str | Path) -> dict[str, Any]:
    """The grid saved in a comparison folder; RunFolderError when it is not one."""
    path = Path(folder) / SPEC_FILE
    if not path.is_file():
        raise RunFolderError(f"{folder} is not a transferkit comparison (no {SPEC_FILE}); "
                             "point to a folder written by `transferkit compare --out`.")
    return load_yaml(path)


def make_spec(strategies, train_per_class, seeds, options: dict[str, Any]) -> dict[str, Any]:
    sizes = parse_sizes(train_per_class)
    return {"format_version": FORMAT_VERSION, "strategies": parse_strategies(strategies),
            "train_per_class": [ALL if s is None else s for s in sizes], "seeds": parse_seeds(seeds),
            "options": options}


def check_grid(spec: dict[str, Any], folder: Path) -> dict[Cell, tuple[RunConfig, Strategy]]:
    """Build every cell's config and check the largest data size fits every seed's split, before any training."""
    configs = {cell: cell_config(spec, cell, folder) for cell in grid(spec)}
    sizes = [s for s in spec["train_per_class"] if s != ALL]
    if sizes:
        first = spec["strategies"][0]
        for seed in spec["seeds"]:
            load_splits(configs[Cell(first, max(sizes), seed)][0])  # DataError naming the smallest class
    return configs


# ---- running and collecting ------------------------------------------------------------------------------------

def run_cell(config: RunConfig, strategy: Strategy) -> str:
    """Fit one cell: skip it when finished, resume it when interrupted. Returns what was done."""
    out = Path(config.out)
    if (out / "metrics.json").is_file():
        return "finished before"
    resume = (out / "config.yaml").is_file()
    engine.fit(config, strategy=strategy, resume=resume, progress=False)
    return "resumed" if resume else "fitted"


def _numbers(metrics: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            row.update({f"{key}/{k}": v for k, v in value.items() if isinstance(v, int | float)})
        elif isinstance(value, int | float) and not isinstance(value, bool):
            row[key] = value
    return row


def cell_row(folder: Path, cell: Cell) -> dict[str, Any] | None:
    """The comparison.csv row of a finished cell (every number of its metrics.json), or None."""
    run = folder / "cells" / cell.name
    if not (run / "metrics.json").is_file():
        return None
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    classes = ModelMeta.from_file(run).classes
    per_class = metrics["n_train"] / len(classes) if classes else float("nan")
    return {"cell": cell.name, "strategy": cell.strategy, "train_per_class": cell.size, "seed": cell.seed,
            "labels_per_class": per_class, "pretrained": STRATEGIES.get(cell.strategy).uses_pretrained,
            "source_only_baseline": STRATEGIES.get(cell.strategy).source_only_baseline,
            "model": metrics.get("model"), "task": metrics.get("task"), **_numbers(metrics),
            "folder": str(Path("cells") / cell.name)}


def collect_table(folder: str | Path, spec: dict[str, Any]):
    """comparison.csv as a DataFrame: one row per finished cell, in grid order."""
    import pandas as pd  # deferred: pandas is slow to import

    rows = [row for cell in grid(spec) if (row := cell_row(Path(folder), cell)) is not None]
    return pd.DataFrame(rows)


def write_table(folder: Path, spec: dict[str, Any]):
    table = collect_table(folder, spec)
    if len(table):
        atomic_write_text(folder / TABLE_FILE, table.to_csv(index=False))
    return table


# ---- the public verbs ------------------------------------------------------------------------------------------

def compare(config: RunConfig | str | Path | None = None, *, strategies: str | Sequence[str],
            train_per_class: str | int | Sequence | None = None, seeds: int | str | Sequence[int] = 3,
            out: str | Path | None = None, progress: bool = True, **options: Any) -> Comparison:
    """Fit every strategy at every data size and seed, then write comparison.csv and the report.

    Re-running the same call skips finished cells and resumes an interrupted one. Every `fit`
    option (epochs, image_size, tracker, ...) passes through to each cell; strategy options go to
    the strategies that take them.

    Example:
        cmp = transferkit.compare(data="demo:mnist", model="efficientnet_lite0",
                                  strategies="feature-extraction,full,scratch",
                                  train_per_class="10,50", seeds=3, image_size=64, out="runs/cmp")
        cmp.table; cmp.report_html

    Raises:
        UnknownNameError: a strategy that does not exist.
        ConfigError: bad seeds or sizes, or an option no cell can take.
        DataError: a size larger than the smallest class allows.
        RunFolderError: `out` holds something other than this same comparison.
    """
    if not out:
        raise ConfigError("No output folder: pass --out DIR (the comparison folder to create).")
    folder = Path(out)
    spec = make_spec(strategies, train_per_class, seeds, shared_options(config, options))
    check_folder(folder, spec)
    configs = check_grid(spec, folder)
    with hold_lock(folder, "compare"):  # one process at a time runs a comparison's cells
        check_folder(folder, spec)  # again, under the lock: another process may have begun meanwhile
        folder.mkdir(parents=True, exist_ok=True)
        save_yaml(spec, folder / SPEC_FILE)
        finished = sum((Path(c.out) / "metrics.json").is_file() for c, _ in configs.values())
        with overall_bar(len(configs), finished=finished, desc="compare", unit="cell", enabled=progress) as bar:
            for i, (cell, (cell_cfg, strategy)) in enumerate(configs.items(), 1):
                done = run_cell(cell_cfg, strategy)
                write_table(folder, spec)
                bar.done(skipped=done == "finished before")
                bar.line(_cell_line(folder, cell, i, len(configs), done))
        result = report(folder)
    if progress:
        print(f"Report: {result.report_html} (and report.md); table: {folder / TABLE_FILE}", flush=True)
    return result


def report(folder: str | Path) -> Comparison:
    """Rebuild comparison.csv, report.md and report.html from the cells finished in `folder`."""
    folder = Path(folder)
    spec = load_spec(folder)
    table = write_table(folder, spec)
    if table.empty:
        raise RunFolderError(f"{folder} has no finished cell yet; run `transferkit compare` with --out {folder}.")
    md, html = write_report(folder, spec, table)
    return Comparison(folder, spec, table, html, md)


def _cell_line(folder: Path, cell: Cell, index: int, total: int, done: str) -> str:
    row = cell_row(folder, cell)
    column = main_column(row)
    return (f"[{index:>{len(str(total))}}/{total}] {cell.name}: {done}, {column} {row[column]:.4f}, "
            f"{row['train_seconds']:.1f} s")
