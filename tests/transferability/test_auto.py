"""The `auto` strategy: its rule on measured signals, its probe, and a run that records its choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

import transferkit
from transferkit.errors import ConfigError
from transferkit.strategies import create_strategy
from transferkit.strategies.auto import AutoConfig, choose, probe

DIGITS = dict(data="demo:digits", model="tiny-cnn", image_size=16, val_fraction=0.1, test_fraction=0.1,
              epochs=1, progress=False)


def signals(k: int = 50, fit: float | None = 0.8, head: str | None = None, seconds: float | None = None) -> dict:
    return {"task": "classification", "n_train": 10 * k, "classes": 10, "labels_per_class": k, "head": head,
            "probe_score": fit, "baseline": 0.1, "feature_fit": fit, "fine_tune_seconds": seconds}


# ---- the rule -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("measured", "options", "strategy", "reason"), [
    (signals(k=5), {}, "feature-extraction", "5 labels per class < few_labels=10: too few to fine-tune"),
    (signals(k=5, fit=0.1), {}, "feature-extraction", "5 labels per class < few_labels=10"),
    (signals(fit=0.97), {}, "feature-extraction", "feature fit 0.97 >= high_fit=0.95: the frozen features already"),
    (signals(k=500, fit=0.99), {}, "feature-extraction", "feature fit 0.99 >= high_fit=0.95"),
    (signals(seconds=900.0), {"budget_seconds": 600}, "feature-extraction",
     "fine-tuning would take about 900 s > budget_seconds=600"),
    (signals(seconds=300.0), {"budget_seconds": 600}, "l2sp", "held near the pretrained weights"),
    (signals(head="logistic"), {}, "feature-extraction", "--head logistic fits on frozen features only"),
    (signals(k=100), {}, "full", "100 labels per class >= many_labels=100: enough to adapt every layer"),
    (signals(fit=0.3), {}, "full", "feature fit 0.30 < low_fit=0.5: the target is far from the pretraining"),
    (signals(k=50, fit=0.8), {}, "l2sp",
     "10 <= 50 labels per class < 100 and feature fit between 0.5 and 0.95: fine-tune every layer"),
    (signals(k=10, fit=0.5), {}, "l2sp", "10 <= 10 labels per class < 100"),
    (signals(k=50, fit=0.8), {"many_labels": 40}, "full", "50 labels per class >= many_labels=40"),
    (signals(k=50, fit=None), {}, "l2sp", "fine-tune every layer"),
])
def test_rule_chooses_and_says_why(measured, options, strategy, reason):
    chosen, reasons = choose(measured, AutoConfig(**options))
    assert chosen == strategy
    assert reasons[0].startswith(f"{measured['labels_per_class']} labels per class, 10 classes")
    assert reason in reasons[-1]


def test_first_reason_states_the_measurements():
    _, reasons = choose(signals(k=50, fit=0.8), AutoConfig())
    assert reasons[0] == ("50 labels per class, 10 classes; frozen-feature probe accuracy 0.800 vs majority "
                          "0.100 (feature fit 0.80)")


@pytest.mark.parametrize(("options", "message"), [
    ({"few_labels": 0}, r"auto needs 1 <= few_labels <= many_labels, got 0 and 100\."),
    ({"few_labels": 200}, r"auto needs 1 <= few_labels <= many_labels, got 200 and 100\."),
    ({"low_fit": 0.9, "high_fit": 0.8}, r"auto needs 0 <= low_fit <= high_fit <= 1, got 0\.9 and 0\.8\."),
    ({"budget_seconds": 0}, r"--budget-seconds must be positive, got 0\.0\."),
])
def test_bad_thresholds_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        create_strategy("auto", options)


# ---- the feature-fit probe --------------------------------------------------------------------------------
def test_probe_tells_separable_features_from_noise():
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 4
    separable = np.eye(4)[labels] * 5 + rng.normal(size=(200, 4)) * 0.3
    noise = rng.normal(size=(200, 16))
    assert probe(separable, labels, "classification", seed=0)["feature_fit"] > 0.95
    assert probe(noise, labels, "classification", seed=0)["feature_fit"] < 0.3
    measured = probe(separable, labels, "classification", seed=0)
    assert measured["baseline"] == 0.25 and measured["probe_score"] > 0.95


def test_probe_reports_no_fit_with_one_label_per_class_and_r2_for_regression():
    rng = np.random.default_rng(0)
    assert probe(rng.normal(size=(3, 5)), np.arange(3), "classification", seed=0)["feature_fit"] is None
    x = rng.normal(size=(100, 5))
    assert probe(x, x @ np.arange(1.0, 6.0), "regression", seed=0)["feature_fit"] > 0.95


# ---- a run with auto --------------------------------------------------------------------------------------
def test_auto_run_records_its_choice_in_metrics_and_the_summary(cli, tmp_path):
    result = cli("fit", "--data", "demo:digits", "--model", "tiny-cnn", "--strategy", "auto", "--image-size", 16,
                 "--train-per-class", 5, "--val-fraction", 0.1, "--test-fraction", 0.1, "--out", tmp_path / "run")
    assert result.code == 0, result.err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    choice = metrics["strategy_choice"]
    assert choice["by"] == "auto" and choice["chose"] == metrics["strategy"] == "feature-extraction"
    assert choice["signals"]["labels_per_class"] == 5 and choice["signals"]["classes"] == 10
    assert "5 labels per class < few_labels=10" in choice["reasons"][-1]
    assert "feature-extraction (chosen by auto)" in result.out and "auto: why" in result.out
    config = transferkit.load_run(tmp_path / "run").config
    assert (config.strategy, config.head, config.epochs) == ("feature-extraction", "logistic", 50)


def test_auto_passes_its_budget_and_keeps_user_settings(tmp_path):
    run = transferkit.fit(strategy="auto", budget_seconds=1e-6, train_per_class=20, head="linear",
                          out=str(tmp_path / "run"), **DIGITS)
    choice = run.metrics["strategy_choice"]
    assert choice["chose"] == "feature-extraction" and "> budget_seconds=1e-06" in choice["reasons"][-1]
    assert choice["signals"]["fine_tune_seconds"] >= 0
    assert (run.config.head, run.config.epochs) == ("linear", 1)


def test_interrupted_auto_run_resumes_with_the_same_command(tmp_path, monkeypatch):
    import transferkit.training.fit as fit_module

    options = dict(strategy="auto", train_per_class=20, out=str(tmp_path / "run"), **{**DIGITS, "epochs": 2})
    original = fit_module.train_end_to_end

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit_module, "train_end_to_end", crash)
    with pytest.raises(KeyboardInterrupt):
        transferkit.fit(**options)
    monkeypatch.setattr(fit_module, "train_end_to_end", original)
    run = transferkit.fit(**options, resume=True)
    assert run.metrics["strategy_choice"]["chose"] == run.config.strategy == "l2sp"


def test_auto_cannot_train_without_choosing():
    from transferkit.backbones import create_backbone
    from transferkit.model import TransferModel, make_head

    model = TransferModel(create_backbone("tiny-cnn"), make_head("linear", 32, 3))
    with pytest.raises(ConfigError, match=r"Strategy 'auto' only chooses a strategy from the data; train through"):
        create_strategy("auto").prepare(model)
