"""The `transferkit` subcommands, run in-process: fit writes a run folder; evaluate, predict and the listings."""

from __future__ import annotations

import csv
import json
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
import yaml
from synthetic_data import COLORS, write_color_images, write_counts, write_reviews

import transferkit
from transferkit.backbones import create_backbone, list_backbones
from transferkit.strategies import STRATEGIES, list_strategies

CLASSIFICATION_KEYS = {"accuracy", "macro_f1", "precision", "recall"}
REGRESSION_KEYS = {"mae", "rmse", "r2"}
RUN_FIXTURES = ["fe_image_run", "full_image_run", "text_run"]


def read_config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


# ---- fit --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("run_fixture", RUN_FIXTURES)
def test_fit_writes_a_run_folder(request, run_fixture):
    run = request.getfixturevalue(run_fixture)
    for name in ("config.yaml", "metrics.json", "history.csv", "predictions_val.csv", "predictions_test.csv",
                 "model/model.safetensors", "model/transferkit.json"):
        assert (run / name).is_file(), name


@pytest.mark.parametrize("run_fixture", RUN_FIXTURES)
def test_saved_config_is_fully_resolved(request, run_fixture):
    config = read_config(request.getfixturevalue(run_fixture))
    strategy = STRATEGIES.get(config["strategy"])
    assert isinstance(config["epochs"], int) and config["epochs"] >= 1
    assert isinstance(config["lr"], float) and config["lr"] > 0
    assert config["head"] == strategy.defaults["head"]
    assert set(config["strategy_options"]) == {f.name for f in fields(strategy.config_class)}
    assert set(config) == {f.name for f in fields(transferkit.RunConfig)}
    transferkit.RunConfig.from_dict(config)  # loads back as it was saved


@pytest.mark.parametrize("run_fixture", RUN_FIXTURES)
def test_metrics_json(request, run_fixture):
    run = request.getfixturevalue(run_fixture)
    metrics, config = read_metrics(run), read_config(run)
    assert set(metrics["val"]) == set(metrics["test"]) == CLASSIFICATION_KEYS
    assert all(0 <= v <= 1 for split in ("val", "test") for v in metrics[split].values())
    assert metrics["strategy"] == config["strategy"] and metrics["model"] == config["model"]
    assert metrics["train_seconds"] >= 0
    assert 0 < metrics["trainable_params"] <= metrics["total_params"]
    model = transferkit.load_run(run).model
    assert metrics["total_params"] == sum(p.numel() for p in model.parameters())


def test_feature_extraction_trains_only_the_head(fe_image_run):
    metrics = read_metrics(fe_image_run)
    head = [g for g in metrics["groups"] if g["group"] == "head"][0]
    assert metrics["trainable_params"] == head["total"] == 32 * len(COLORS) + len(COLORS)


def test_lightning_run_has_checkpoints_and_one_history_row_per_epoch(full_image_run):
    assert {p.name for p in (full_image_run / "checkpoints").iterdir()} >= {"last.ckpt"}
    history = pd.read_csv(full_image_run / "history.csv")
    assert list(history["epoch"]) == list(range(read_metrics(full_image_run)["epochs_run"]))
    assert {"train/loss", "val/accuracy"} <= set(history.columns)


def test_fit_on_text_saves_the_tokenizer(text_run):
    encoder = text_run / "model" / "encoder"
    assert (encoder / "config.json").is_file()
    assert (encoder / "tokenizer.json").is_file() or (encoder / "vocab.txt").is_file()


def test_fit_regression_from_a_table(cli, tmp_path):
    table = write_counts(tmp_path / "counts.csv")
    result = cli("fit", "--data", table, "--task", "regression", "--model", "tiny-text", "--out", tmp_path / "r")
    assert result.code == 0, result.err
    metrics = read_metrics(tmp_path / "r")
    assert set(metrics["val"]) == set(metrics["test"]) == REGRESSION_KEYS
    assert metrics["test"]["rmse"] >= metrics["test"]["mae"] >= 0
    assert read_config(tmp_path / "r")["head"] == "ridge"
    meta = json.loads((tmp_path / "r" / "model" / "transferkit.json").read_text())
    assert meta["task"] == "regression" and meta["classes"] is None
    predicted = cli("predict", tmp_path / "r", "good", "good good good good good good", "--out", tmp_path / "p.csv")
    assert predicted.code == 0
    values = pd.read_csv(tmp_path / "p.csv")["prediction"]
    assert values.dtype.kind == "f" and values[1] > values[0]  # more "good", larger count


def test_config_file_with_flags_overriding_it(cli, tmp_path, color_images):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "data": str(color_images), "model": "tiny-cnn", "strategy": "partial", "epochs": 5, "lr": 0.02,
        "image-size": 16, "strategy_options": {"freeze": 1, "backbone_lr_scale": 0.5},
    }))
    result = cli("fit", "--config", config, "--epochs", 1, "--freeze", 2, "--out", tmp_path / "r")
    assert result.code == 0, result.err
    saved = read_config(tmp_path / "r")
    assert saved["epochs"] == 1 and saved["lr"] == 0.02 and saved["image_size"] == 16  # flag wins, file fills
    assert saved["strategy"] == "partial"
    assert saved["strategy_options"]["freeze"] == 2 and saved["strategy_options"]["backbone_lr_scale"] == 0.5
    assert read_metrics(tmp_path / "r")["epochs_run"] == 1


# ---- predict ----------------------------------------------------------------------------------------------

def test_predict_images_to_csv(cli, tmp_path, fe_image_run, color_images):
    images = [color_images / "red" / "3.png", color_images / "blue" / "7.png", color_images / "green" / "1.png"]
    result = cli("predict", fe_image_run, *images, "--out", tmp_path / "preds.csv")
    assert result.code == 0 and "Wrote 3 predictions" in result.out
    with (tmp_path / "preds.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["input"] for row in rows] == [str(p) for p in images]
    assert all(row["prediction"] in COLORS for row in rows)
    for row in rows:
        probabilities = [float(row[f"p_{c}"]) for c in COLORS]
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)
        assert float(row["probability"]) == pytest.approx(max(probabilities))
        assert row["prediction"] == max(COLORS, key=lambda c: float(row[f"p_{c}"]))


def test_predict_prints_without_out(cli, fe_image_run, color_images):
    result = cli("predict", fe_image_run, color_images / "red" / "0.png")
    assert result.code == 0
    header, row = result.out.strip().splitlines()
    assert header.split() == ["input", "prediction", "probability"]
    assert row.split()[1] in COLORS


def test_predict_raw_texts(cli, text_run):
    result = cli("predict", text_run, "great fun movie", "dreadful waste of time")
    assert result.code == 0
    lines = result.out.strip().splitlines()
    assert len(lines) == 3 and lines[1].split()[-2] in ("neg", "pos") and lines[2].split()[-2] in ("neg", "pos")


def test_predict_a_text_table(cli, tmp_path, text_run):
    table = write_reviews(tmp_path / "unlabeled.csv", per_class=3, seed=5, labeled=False)
    result = cli("predict", text_run, table, "--out", tmp_path / "preds.csv")
    assert result.code == 0, result.err
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert list(preds["input"]) == list(pd.read_csv(table)["text"])  # one row per table row, not the file name
    assert set(preds["prediction"]) <= {"neg", "pos"}


# ---- evaluate ---------------------------------------------------------------------------------------------

def test_evaluate_prints_metrics_of_the_holdout(cli, tmp_path, fe_image_run):
    holdout = write_color_images(tmp_path / "holdout", per_class=4, seed=99)
    result = cli("evaluate", fe_image_run, "--data", holdout, "--out", tmp_path / "eval.json")
    assert result.code == 0
    saved = json.loads((tmp_path / "eval.json").read_text())
    metrics = saved["metrics"]
    assert set(metrics) == CLASSIFICATION_KEYS and saved["n"] == 12
    paths = sorted(holdout.rglob("*.png"))
    predicted = transferkit.load_run(fe_image_run).predict([str(p) for p in paths])
    hits = [row["prediction"] == path.parent.name for row, path in zip(predicted, paths)]
    assert metrics["accuracy"] == pytest.approx(sum(hits) / len(hits))
    assert metrics["accuracy"] >= 0.75  # three clearly different colours
    for name in COLORS:  # the printed table: one row per class with precision, recall, F1 and support 4
        row = next(line for line in result.out.splitlines() if f" {name} " in line)
        scores = saved["per_class"][name]
        assert f"{scores['precision']:.4f}" in row and f"{scores['f1']:.4f}" in row and row.rstrip(" │|").endswith("4")
    assert f"{metrics['accuracy']:.4f}" in result.out


def test_evaluate_a_subset_of_the_classes(cli, tmp_path, text_run):
    holdout = tmp_path / "pos.csv"
    holdout.write_text("text,label\ngreat fun movie,pos\nsuperb and moving,pos\n", encoding="utf-8")
    result = cli("evaluate", text_run, "--data", holdout, "--out", tmp_path / "eval.json")
    assert result.code == 0, result.err
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert set(saved["metrics"]) == CLASSIFICATION_KEYS and saved["per_class"]["pos"]["support"] == 2


def test_evaluate_and_predict_take_the_column_flags_their_messages_name(cli, tmp_path, text_run):
    table = tmp_path / "renamed.csv"
    table.write_text("review,sentiment\ngreat fun movie,pos\ndreadful waste of time,neg\n", encoding="utf-8")
    result = cli("evaluate", text_run, "--data", table, "--text-column", "review", "--label-column", "sentiment")
    assert result.code == 0, result.err
    predicted = cli("predict", text_run, table, "--text-column", "review", "--out", tmp_path / "p.csv")
    assert predicted.code == 0, predicted.err
    assert list(pd.read_csv(tmp_path / "p.csv")["input"]) == ["great fun movie", "dreadful waste of time"]


def test_predict_into_head_ends_cleanly(tmp_path, fe_image_run, color_images):
    """`transferkit predict ... | head -1`: the closed pipe is no error and no traceback."""
    import subprocess
    import sys

    images = " ".join(str(p) for p in sorted(color_images.rglob("*.png")))
    done = subprocess.run(f"{sys.executable} -m transferkit predict {fe_image_run} {images} | head -1; "
                          "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["input", "prediction", "probability"] and done.stderr == ""


# ---- listings ---------------------------------------------------------------------------------------------

def test_models_lists_every_backbone(cli):
    result = cli("models")
    assert result.code == 0
    lines = result.out.splitlines()
    for row in list_backbones():
        line = next(line for line in lines if line.split()[0] == row["name"])
        assert line.split()[1] == row["modality"]
    assert "timm:<name>" in lines[-1] and "hf:<name>" in lines[-1]


def test_inspect_lists_layer_groups_in_order(cli):
    result = cli("inspect", "tiny-cnn")
    assert result.code == 0
    lines = result.out.splitlines()
    backbone = create_backbone("tiny-cnn")
    assert lines[0] == f"tiny-cnn: 32 features, {sum(p.numel() for p in backbone.parameters()):,} parameters"
    start = lines.index("layer groups (input -> output):") + 1
    listed = [line.split() for line in lines[start:start + 3]]
    assert [row[1] for row in listed] == ["stem", "block1", "block2"]
    assert [row[0] for row in listed] == ["0", "1", "2"]
    expected = [f"{sum(p.numel() for p in g.parameters()):,}" for g in backbone.layer_groups()]
    assert [row[2] for row in listed] == expected
    assert lines[start + 3].startswith("preprocessing:") and "input_size=(16, 16)" in lines[start + 3]


def test_strategies_lists_every_registered_strategy(cli):
    result = cli("strategies")
    assert result.code == 0
    lines = result.out.splitlines()
    assert len(lines) == len(STRATEGIES.names())
    for line, row in zip(lines, list_strategies()):
        assert line.split()[0] == row["name"]
        assert line.endswith(row["when_to_use"]) and row["when_to_use"]


# ---- options, help, version, print-config ----------------------------------------------------------------

def _changed_value(f):
    """A valid value of a strategy option that differs from its default (its flag's arguments and the value)."""
    from transferkit.strategies.base import flag_of

    flag, default = flag_of(f), f.default
    if isinstance(default, bool):
        return [flag if not default else "--no-" + flag[2:]], not default
    if isinstance(default, int):
        return [flag, str(default + 1)], default + 1
    if isinstance(default, float):
        return [flag, str(default * 0.9)], default * 0.9
    if "str" in str(f.type):
        return [flag, "conv"], "conv"
    return [flag, "0.5"], 0.5  # an unset number: any positive value is in range


STRATEGY_FIELDS = [(name, f) for name in STRATEGIES.names() for f in fields(STRATEGIES.get(name).config_class)]


@pytest.mark.parametrize(("strategy", "field"), STRATEGY_FIELDS, ids=[f"{s}-{f.name}" for s, f in STRATEGY_FIELDS])
def test_every_strategy_option_has_a_flag_that_reaches_the_config(cli, strategy, field):
    argv, value = _changed_value(field)
    target = ["--target-data", "demo:digits"] if STRATEGIES.get(strategy).needs_target_data else []
    result = cli("fit", "--data", "demo:digits", "--model", "tiny-cnn", "--strategy", strategy, *target, *argv,
                 "--print-config")
    assert result.code == 0, result.err
    assert yaml.safe_load(result.out)["strategy_options"][field.name] == pytest.approx(value)


@pytest.mark.parametrize(("argv", "message"), [
    (["--strategy", "feature-extraction", "--C", "-1"], "--C must be positive, got -1.0."),
    (["--strategy", "l2sp", "--alpha", "-1"], "--alpha must be >= 0, got -1.0."),
    (["--strategy", "lora", "--lora-r", "0"], "--lora-r must be >= 1, got 0."),
    (["--strategy", "full", "--layer-decay", "1.5"], "--layer-decay must be in (0, 1], got 1.5."),
])
def test_option_ranges_from_the_field_metadata_are_refused_in_one_line(cli_error, tmp_path, argv, message):
    line = cli_error("fit", "--data", "demo:digits", "--model", "tiny-cnn", *argv, "--out", tmp_path / "r")
    assert line == f"transferkit: error: {message}"
    assert not (tmp_path / "r").exists()


def _subparsers():
    from transferkit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    return parser, sub.choices


def test_help_of_every_command_shows_each_default_and_choice():
    import argparse

    _, commands = _subparsers()
    assert {"fit", "compare", "tune", "rank", "export", "predict", "evaluate"} <= set(commands)
    for name, parser in commands.items():
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
                continue
            shown = " ".join(parser._get_formatter()._expand_help(action).split())
            assert "default: " in shown and " ".join(shown.split()) in text, (name, action.option_strings)
            if action.choices:
                assert "{" + ",".join(action.choices) + "}" in text, (name, action.option_strings)
    fit = " ".join(commands["fit"].format_help().split())
    for option in ("val_fraction", "batch_size", "weight_decay", "patience", "augment", "tracker"):
        default = getattr(transferkit.RunConfig(data="d", model="m"), option)
        assert f"(default: {default})" in fit, option
    assert "default: 0.7 (gradual); 1.0 (full" in fit and "lora (default: 8)" in fit
    assert all(name in fit for name in STRATEGIES.names())


def test_version(capsys):
    from transferkit.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"transferkit {transferkit.__version__}"


def test_print_config_prints_the_resolved_yaml_without_training(cli, tmp_path):
    result = cli("fit", "--data", "demo:digits", "--model", "tiny-cnn", "--strategy", "gradual",
                 "--unfreeze-every", "2", "--out", tmp_path / "run", "--print-config")
    assert result.code == 0, result.err
    config = yaml.safe_load(result.out)
    assert set(config) == {f.name for f in fields(transferkit.RunConfig)}
    defaults = STRATEGIES.get("gradual").defaults
    assert (config["epochs"], config["lr"], config["head"]) == (defaults["epochs"], defaults["lr"], defaults["head"])
    assert config["strategy_options"]["unfreeze_every"] == 2 and "layer_decay" in config["strategy_options"]
    assert not (tmp_path / "run").exists()


# ---- the error boundary ----------------------------------------------------------------------------------

def test_an_internal_error_is_one_line_with_exit_1(cli, monkeypatch):
    import transferkit.cli as cli_module

    def broken(args):
        raise ValueError("an index went wrong\nsecond line")

    monkeypatch.setitem(cli_module.COMMANDS, "models", broken)
    result = cli("models")
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "transferkit: internal error: ValueError: an index went wrong second line; rerun with --debug and report it"]
    with pytest.raises(ValueError, match="an index went wrong"):
        cli("--debug", "models")


def test_ctrl_c_during_training_exits_130_and_the_printed_command_resumes(cli, tmp_path, monkeypatch):
    """Lightning turns Ctrl-C into sys.exit(1); the CLI still reports an interruption and how to continue."""
    import signal

    from transferkit.training.module import TransferModule

    real_epoch_start = TransferModule.on_train_epoch_start

    def ctrl_c(self):
        if self.current_epoch == 1:
            raise KeyboardInterrupt
        real_epoch_start(self)

    out = tmp_path / "run"
    argv = ["--data", "demo:digits", "--model", "tiny-cnn", "--strategy", "full", "--image-size", "16",
            "--train-per-class", "5", "--epochs", "2", "--no-probe-init", "--out", out]
    handler = signal.getsignal(signal.SIGINT)
    with monkeypatch.context() as mp:
        mp.setattr(TransferModule, "on_train_epoch_start", ctrl_c)
        result = cli("fit", *argv)
    assert result.code == 130
    assert result.err.strip().splitlines()[-1] == f"transferkit: interrupted; continue with: transferkit fit --out {out} --resume"
    assert signal.getsignal(signal.SIGINT) == handler  # Ctrl-C works again after Lightning's shutdown
    assert not (out / "metrics.json").exists() and (out / "checkpoints" / "last.ckpt").is_file()
    assert cli("fit", "--out", out, "--resume").code == 0
    assert read_metrics(out)["epochs_run"] == 2


def test_ctrl_c_during_compare_says_the_same_command_resumes(cli, tmp_path, monkeypatch):
    import transferkit.workflows.compare as compare_module

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_module, "run_cell", ctrl_c)
    argv = ["compare", "--data", "demo:digits", "--model", "tiny-cnn", "--strategies", "scratch", "--seeds", "1",
            "--image-size", "16", "--out", str(tmp_path / "cmp")]
    result = cli(*argv)
    assert result.code == 130
    # One line: captured stderr is no terminal, so no progress bar is drawn around it.
    assert result.err.strip().splitlines() == [f"transferkit: interrupted; continue with: transferkit "
                                               f"{' '.join(argv)} (the same command resumes; finished cells are kept)"]


def test_output_piped_into_a_reader_that_stops_early_ends_cleanly(tmp_path):
    """`transferkit strategies | head -0`: the closed pipe is no traceback and no 'Exception ignored' message."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRANSFERKIT_CACHE": str(tmp_path / "cache")}
    for argv in (["strategies"], ["fit", "--help"]):
        child = subprocess.Popen([sys.executable, "-m", "transferkit", *argv], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env)
        child.stdout.close()  # the reader is gone before the command writes anything
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0 and err.decode() == "", err.decode()


def test_predict_skips_bad_files_when_told_as_its_message_says(cli, tmp_path, fe_image_run, color_images):
    (tmp_path / "bad.png").write_bytes(b"nope")
    good = color_images / "red" / "0.png"
    result = cli("predict", fe_image_run, good, tmp_path / "bad.png", "--skip-bad-files", "--out", tmp_path / "p.csv")
    assert result.code == 0, result.err
    assert list(pd.read_csv(tmp_path / "p.csv")["input"]) == [str(good)]
