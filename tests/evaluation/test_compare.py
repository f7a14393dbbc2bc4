"""`transferkit.compare` on demo:mnist (tiny-cnn, 3 strategies x 2 sizes x 2 seeds): its folder, table and report."""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from compare_helpers import OPTIONS, SEEDS, SIZES, STRATEGIES
from PIL import Image

import transferkit
from transferkit.training.module import TransferModule


def read_table(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "comparison.csv", dtype={"train_per_class": str})


def test_comparison_csv_has_one_row_per_cell(mnist_comparison):
    folder = mnist_comparison.comparison.folder
    table = read_table(folder)
    expected = {(s, str(n), seed) for s, n, seed in itertools.product(STRATEGIES, SIZES, SEEDS)}
    assert len(table) == len(expected) == 12
    assert set(zip(table["strategy"], table["train_per_class"], table["seed"])) == expected
    assert table["cell"].is_unique
    assert (table["n_train"] == table["train_per_class"].astype(int) * 10).all()  # 10 digit classes


def test_each_row_holds_every_number_of_its_metrics_json(mnist_comparison):
    folder = mnist_comparison.comparison.folder
    table = read_table(folder)
    for row in table.to_dict(orient="records"):
        metrics = json.loads((folder / row["folder"] / "metrics.json").read_text())
        for split in ("val", "test"):
            for name, value in metrics[split].items():
                assert row[f"{split}/{name}"] == pytest.approx(value), (row["cell"], split, name)
        for key in ("train_seconds", "trainable_params", "total_params", "epochs_run", "n_train", "n_val", "n_test"):
            assert row[key] == pytest.approx(metrics[key]), (row["cell"], key)
        assert transferkit.load_run(folder / row["folder"]).config.seed == row["seed"]  # a real run folder


def test_options_pass_through_to_every_cell(mnist_comparison):
    for run in (mnist_comparison.comparison.folder / "cells").iterdir():
        config = transferkit.load_run(run).config
        assert (config.image_size, config.epochs, config.val_fraction) == (16, 2, 0.05)
        assert config.data == OPTIONS["data"] and config.model == OPTIONS["model"]
        assert Path(config.feature_cache) == mnist_comparison.comparison.folder / "feature-cache"


def test_trainable_parameters_differ_by_strategy(mnist_comparison):
    table = read_table(mnist_comparison.comparison.folder)
    trainable = table.groupby("strategy")["trainable_params"].unique()
    assert list(trainable["feature-extraction"]) == [32 * 10 + 10]  # the head alone
    assert trainable["full"][0] == trainable["scratch"][0] == table["total_params"].iloc[0]


def test_frozen_features_are_computed_once_and_shared(mnist_comparison):
    cache = mnist_comparison.comparison.folder / "feature-cache"
    extracted = mnist_comparison.extractions
    # Feature extraction needs train + val features, full's linear probe the same train features: one pass per
    # distinct split, i.e. 4 training sets (2 sizes x 2 seeds) + 2 validation sets (one per seed).
    assert len(extracted) == len(set(extracted)) == len(SIZES) * len(SEEDS) + len(SEEDS)
    assert {p.parent for p in extracted} == {cache}
    assert sorted(p.name for p in cache.glob("*.npy")) == sorted(p.name for p in extracted)


def test_report_means_are_over_seeds_with_intervals_inside_0_1(mnist_comparison):
    folder = mnist_comparison.comparison.folder
    table, md = read_table(folder), (folder / "report.md").read_text()
    for (strategy, size), part in table.groupby(["strategy", "train_per_class"]):
        mean = part["test/accuracy"].mean()
        line = next(ln for ln in _size_table(md, size) if re.search(rf"\b{re.escape(strategy)}\b", ln))
        low, high = map(float, re.search(rf"\| {mean:.3f} \| \[([\d.]+), ([\d.]+)\] \|",
                                         line.replace("**", "")).groups())
        assert 0 <= low <= high <= 1, line  # bootstrap over seeds and test items: inside [0, 1] by construction


def _size_table(md: str, size: str) -> list[str]:
    section = md.split(f"*{size} labels per class:")[1].split("\n\n")[1]
    return section.splitlines()[2:]


def test_best_strategy_is_starred_only_when_separated_else_tied(mnist_comparison):
    folder = mnist_comparison.comparison.folder
    table, md = read_table(folder), (folder / "report.md").read_text()
    for size, part in table.groupby("train_per_class"):
        top = part.groupby("strategy")["test/accuracy"].mean().idxmax()
        marked = [ln for ln in _size_table(md, size) if "★" in ln]
        caption = md.split(f"*{size} labels per class: ")[1].split("*")[0]
        if marked:
            assert len(marked) == 1 and f"★ {top}" in marked[0] and caption.startswith(f"★ {top} is best")
        else:
            assert caption.startswith("tied for best: ") and top in caption.split("(")[0]


def test_transfer_benefit_over_scratch_is_paired_by_seed(mnist_comparison):
    folder = mnist_comparison.comparison.folder
    table, md = read_table(folder), (folder / "report.md").read_text()
    benefit = md.split("## Transfer benefit")[1].split("## Data efficiency")[0]
    for size in map(str, SIZES):
        part = table[table["train_per_class"] == size].set_index("seed")
        base = part[part["strategy"] == "scratch"]["test/accuracy"]
        for strategy in ("feature-extraction", "full"):
            gain = (part[part["strategy"] == strategy]["test/accuracy"] - base).mean()
            assert f"| {size} labels per class | {strategy} | {gain:+.3f} |" in benefit
    negative = [ln for ln in benefit.splitlines() if "negative transfer" in ln and ln.startswith("|")]
    assert len(negative) == benefit.count("> **Warning:** Negative transfer")


def test_report_md_and_figures(mnist_comparison):
    folder = mnist_comparison.comparison.folder
    md = (folder / "report.md").read_text()
    for heading in ("# Transfer comparison: tiny-cnn on demo:mnist", "## Results per data size",
                    "## Transfer benefit", "## Data efficiency", "## Learning curves", "## Best run"):
        assert heading in md
    assert "12 of 12 cells finished" in md
    for name in ("data-efficiency", "learning-curves", "best-run"):
        assert f"(figures/{name}.png)" in md
        image = Image.open(folder / "figures" / f"{name}.png")
        assert image.format == "PNG" and image.width > 400 and image.height > 300
        assert len(set(image.convert("RGB").getdata())) > 50, f"{name}.png looks empty"
    assert "Confusion matrix of the best run" in md


def test_report_html_is_one_self_contained_file(mnist_comparison):
    page = (mnist_comparison.comparison.folder / "report.html").read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    for source in sources:
        assert Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).format == "PNG"
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from elsewhere
    assert page.count("<table>") == len(SIZES) + 1  # one per data size + the transfer benefit
    md = (mnist_comparison.comparison.folder / "report.md").read_text()
    assert page.count('class="best"') == md.count("| **★ ")  # a highlighted row per separated best


def test_rerunning_the_same_comparison_skips_finished_cells(mnist_comparison, monkeypatch):
    folder = mnist_comparison.comparison.folder
    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("cells/*/metrics.json")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was fitted again")

    monkeypatch.setattr("transferkit.training.fit.fit", no_training)
    again = transferkit.compare(strategies=STRATEGIES, train_per_class=SIZES, seeds=len(SEEDS), out=str(folder),
                                progress=False, **OPTIONS)
    assert {p: p.stat().st_mtime_ns for p in folder.glob("cells/*/metrics.json")} == stamps
    assert again.complete and len(again.table) == 12


def test_an_interrupted_comparison_resumes_where_it_stopped(tmp_path, monkeypatch):
    options = dict(data="demo:digits", model="tiny-cnn", image_size=16, epochs=2, train_per_class=5, seeds=2,
                   strategies="feature-extraction,scratch", out=str(tmp_path / "cmp"), progress=False)
    real_epoch_start = TransferModule.on_train_epoch_start

    def power_cut(self):
        if self.current_epoch == 1:
            raise RuntimeError("power cut")
        real_epoch_start(self)

    with monkeypatch.context() as mp:
        mp.setattr(TransferModule, "on_train_epoch_start", power_cut)
        with pytest.raises(RuntimeError, match="power cut"):
            transferkit.compare(**options)
    cells = tmp_path / "cmp" / "cells"
    finished = sorted(p.parent.name for p in cells.glob("*/metrics.json"))
    assert finished == ["feature-extraction-n5-seed0", "feature-extraction-n5-seed1"]
    assert len(read_table(tmp_path / "cmp")) == 2  # the table follows the finished cells
    interrupted = cells / "scratch-n5-seed0"
    assert (interrupted / "checkpoints" / "last.ckpt").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in cells.glob("*/metrics.json")}

    result = transferkit.compare(**options)
    assert result.complete and len(read_table(tmp_path / "cmp")) == 4
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # finished cells were not fitted again
    assert sorted(p.name for p in (interrupted / "logs").glob("attempt*")) == ["attempt1", "attempt2"]
    history = pd.read_csv(interrupted / "history.csv")
    assert list(history["epoch"]) == [0, 1]  # epoch 0 from the first attempt, epoch 1 from the resumed one
