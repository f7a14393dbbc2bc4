"""Domain adaptation through `fit` and `compare`: target batches, logged domain losses, domain gap, errors."""

from __future__ import annotations

import csv
import json
import logging
import random
import re

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from synthetic_data import write_reviews

import transferkit
from transferkit.data import SourceTargetLoader, make_loader
from transferkit.errors import ConfigError
from transferkit.strategies import STRATEGIES
from transferkit.strategies.dann import DISCRIMINATOR

pytestmark = pytest.mark.filterwarnings("ignore:::lightning")

ADAPTING = [n for n in STRATEGIES.names() if STRATEGIES.get(n).needs_target_data]
#: A source-only run of the digits shift, as small as a fit gets: 5 MNIST digits per class, 16x16.
DIGITS_SHIFT = dict(data="demo:mnist", target_data="demo:digits", test_data="demo:digits", model="tiny-cnn",
                    image_size=16, train_per_class=5, val_fraction=0.04, epochs=2, batch_size=16)


def read_metrics(run) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def test_the_registry_holds_the_three_domain_adaptation_strategies():
    assert set(ADAPTING) == {"dann", "coral", "mmd"}
    assert all(STRATEGIES.get(n).source_only_baseline == "full" for n in ADAPTING)
    assert not STRATEGIES.get("full").needs_target_data


# ---- errors ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ADAPTING)
def test_fit_without_target_data_fails_in_one_line(cli_error, tmp_path, strategy):
    message = cli_error("fit", "--data", "demo:digits", "--model", "tiny-cnn", "--strategy", strategy,
                        "--out", tmp_path / "run")
    assert message == (f"transferkit: error: Strategy '{strategy}' adapts to an unlabeled target domain: pass "
                       "--target-data (an image folder, a table or demo:<name>, like --data; its labels are not used).")
    assert not (tmp_path / "run").exists()


def test_compare_without_target_data_fails_before_any_cell(cli_error, tmp_path):
    message = cli_error("compare", "--data", "demo:digits", "--model", "tiny-cnn", "--strategies", "full,coral",
                        "--seeds", "1", "--out", tmp_path / "cmp")
    assert "Strategy 'coral' adapts to an unlabeled target domain: pass --target-data" in message
    assert not (tmp_path / "cmp").exists()


def test_target_data_of_another_modality_is_refused(cli_error, tmp_path):
    reviews = write_reviews(tmp_path / "reviews.csv")
    message = cli_error("fit", "--data", "demo:digits", "--target-data", reviews, "--model", "tiny-cnn",
                        "--strategy", "coral", "--image-size", "16", "--out", tmp_path / "run")
    assert f"--target-data {reviews} holds text but --data demo:digits holds image" in message


def test_target_data_is_refused_under_ddp():
    from transferkit.training.plan import complete_config

    config = transferkit.build_config(**DIGITS_SHIFT, strategy="mmd", devices=2, accelerator="cpu", out="x")
    with pytest.raises(ConfigError, match=r"--target-data trains on one device"):
        complete_config(config)


# ---- data -----------------------------------------------------------------------------------------------------
def test_target_labels_are_dropped_and_digits_are_preprocessed_like_mnist(tmp_path):
    from transferkit.training.plan import make_plan

    prep = make_plan(transferkit.build_config(**DIGITS_SHIFT, strategy="coral", out=str(tmp_path)))
    assert not prep.target.labeled and len(prep.target) == 1797 and prep.target.modality == "image"
    spec = prep.model.backbone.data_spec
    for data in (prep.splits["train"], prep.target):  # 28x28 MNIST and 8x8 optdigits: one transform
        inputs, _, _ = next(iter(make_loader(data, spec=spec, image_size=16, batch_size=4)))
        assert inputs.shape == (4, 3, 16, 16) and torch.equal(inputs[:, 0], inputs[:, 2])


def test_source_target_loader_pairs_every_source_batch_and_cycles_the_target_on_its_own():
    from transferkit.data import LabeledData

    def loader(n, name):
        data = LabeledData([str(i) for i in range(n)], None, "text", "classification", None, name)
        return make_loader(data, spec=_text_spec(), tokenize=lambda texts, _: [int(t) for t in texts],
                           batch_size=2, train=True)

    paired = SourceTargetLoader(loader(6, "source"), loader(4, "target"))
    assert len(paired) == 3
    epochs = [list(paired) for _ in range(2)]
    assert all(len(batch) == 4 for epoch in epochs for batch in epoch)
    assert all(sorted(i for b in epoch for i in b[0]) == list(range(6)) for epoch in epochs)
    targets = [b[3] for epoch in epochs for b in epoch]  # 6 target batches: three passes over 4 samples
    passes = [sorted(targets[i] + targets[i + 1]) for i in (0, 2, 4)]
    assert passes == [[0, 1, 2, 3]] * 3
    assert targets[2] != targets[0] or targets[3] != targets[1]  # reshuffled on every pass


def test_each_epoch_of_source_and_target_batches_depends_only_on_seed_and_epoch():
    """What Lightning's `set_epoch` call buys: a run resumed at epoch 2 draws epoch 2's batches."""
    from transferkit.data import LabeledData

    def paired(seed):
        def loader(name):
            data = LabeledData([str(i) for i in range(8)], None, "text", "classification", None, name)
            return make_loader(data, spec=_text_spec(), tokenize=lambda texts, _: [int(t) for t in texts],
                               batch_size=2, train=True, seed=seed)
        return SourceTargetLoader(loader("source"), loader("target"))

    def epoch(loader, e):
        loader.sampler.set_epoch(e)
        return [(b[0], b[3]) for b in loader]

    straight = paired(0)
    epochs = [epoch(straight, e) for e in range(3)]
    assert epoch(paired(0), 2) == epochs[2]  # a fresh loader (a resumed run) at epoch 2
    assert epochs[0] != epochs[1] != epochs[2]  # yet every epoch has its own order
    assert epoch(paired(1), 2) != epochs[2]
    assert all([s for s, _ in e] != [t for _, t in e] for e in epochs)  # same seed, independent orders


def _text_spec():
    from transferkit.backbones.base import DataSpec

    return DataSpec(modality="text")


# ---- a fit on the digits shift ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapted_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapted")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERKIT_CACHE", str(root / "cache"))
        return {s: transferkit.fit(**DIGITS_SHIFT, strategy=s, out=str(root / s), progress=False) for s in ADAPTING}


@pytest.mark.parametrize("strategy", ADAPTING)
def test_fit_logs_the_domain_loss_and_measures_the_domain_gap(adapted_runs, strategy):
    run = adapted_runs[strategy]
    history = pd.read_csv(run.folder / "history.csv")
    column = f"train/loss/{strategy}"
    assert column in history and len(history) == 2
    assert np.isfinite(history[column]).all() and (history[column] > 0).all()
    metrics = read_metrics(run.folder)
    gap = metrics["domain_gap"]
    assert set(gap) == {"proxy_a_distance_before", "proxy_a_distance_after", "samples_per_domain"}
    assert 0 <= gap["proxy_a_distance_before"] <= 2 and 0 <= gap["proxy_a_distance_after"] <= 2
    assert gap["samples_per_domain"] == 50  # every one of the 50 source training digits
    assert metrics["model_selection"] == "source validation split"
    assert metrics["target_data"] == "demo:digits" and metrics["n_target"] == 1797
    assert metrics["n_test"] == 1797 and 0 <= metrics["test"]["accuracy"] <= 1  # scored on the target labels
    rows = dict(run.summary_rows())
    assert rows["model selection"] == "source validation split (target labels never choose the model)"
    assert re.fullmatch(r"\d\.\d{3} before -> \d\.\d{3} after training \(0: same, 2: separable\)",
                        rows["domain gap (proxy A-distance)"])


def test_dann_loss_is_the_discriminators_cross_entropy_near_chance(adapted_runs):
    history = pd.read_csv(adapted_runs["dann"].folder / "history.csv")
    assert history["train/loss/dann"].between(0.3, 1.2).all()


def test_the_saved_dann_model_is_backbone_and_head_only(adapted_runs):
    run = adapted_runs["dann"]
    saved = load_file(str(run.folder / "model" / "model.safetensors"))
    assert saved and not any(k.startswith(DISCRIMINATOR) for k in saved)
    assert {k.split(".")[0] for k in saved} == {"backbone", "head"}
    checkpoint = torch.load(run.folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert any(k.startswith(f"model.{DISCRIMINATOR}.") for k in checkpoint["state_dict"])  # a resume needs it
    assert run.evaluate("demo:digits")["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"])


def test_a_text_model_adapts_to_a_shifted_text_domain(tmp_path):
    source = write_reviews(tmp_path / "source.csv", per_class=12)
    target = tmp_path / "target.csv"  # lower-cased, punctuation and digits gone, words shuffled, unlabeled
    rng = random.Random(0)
    with source.open(encoding="utf-8") as fh, target.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["text"])
        for row in csv.DictReader(fh):
            words = re.sub(r"[^a-z ]", "", row["text"].lower()).split()
            rng.shuffle(words)
            writer.writerow([" ".join(words).upper()])
    run = transferkit.fit(data=str(source), target_data=str(target), model="tiny-text", strategy="mmd",
                          epochs=2, batch_size=8, out=str(tmp_path / "run"), progress=False)
    history = pd.read_csv(run.folder / "history.csv")
    assert np.isfinite(history["train/loss/mmd"]).all() and (history["train/loss/mmd"] > 0).all()
    assert read_metrics(run.folder)["n_target"] == 24
    assert 0 <= run.metrics["domain_gap"]["proxy_a_distance_after"] <= 2


# ---- compare ----------------------------------------------------------------------------------------------------
def test_compare_with_target_data_measures_adaptation_against_source_only(cli, tmp_path, caplog):
    args = ["--data", "demo:mnist", "--target-data", "demo:digits", "--test-data", "demo:digits", "--model",
            "tiny-cnn", "--image-size", "16", "--train-per-class", "5", "--val-fraction", "0.04", "--epochs", "1",
            "--strategies", "full,coral", "--seeds", "1", "--out", tmp_path / "cmp"]
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        result = cli("compare", *args)
    assert result.code == 0, result.err
    assert "Strategy 'full' does not train on --target-data demo:digits" in caplog.text
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert list(table["strategy"]) == ["full", "coral"]
    assert table["domain_gap/proxy_a_distance_after"].between(0, 2).all()  # the source-only run measures it too
    assert table["n_target"].tolist() == [1797, 1797]
    report = (tmp_path / "cmp" / "report.md").read_text(encoding="utf-8")
    assert "## Domain adaptation" in report and "Target domain: demo:digits, unlabeled in training" in report
    assert re.search(r"\| 5 labels per class \| coral \| full \| [+-]\d\.\d{3} \|", report)
    assert "target labels never choose a model" in report

    changed = [a if a != "demo:digits" or i != args.index("--target-data") + 1 else "demo:mnist"
               for i, a in enumerate(args)]
    refused = cli("compare", *changed)
    assert refused.code == 2 and "--target-data: 'demo:digits' there, 'demo:mnist' now" in refused.err
