"""Every user-facing error: one `transferkit: error:` line, exit code 2, a traceback only with --debug."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from synthetic_data import write_color_images, write_reviews

from transferkit.errors import DataError, TransferkitError, suggest


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- data sources ---------------------------------------------------------------------------------------------

def test_missing_data_path(cli_error, tmp_path):
    message = cli_error("fit", "--data", tmp_path / "no-such-folder", "--model", "tiny-cnn", "--out", tmp_path / "r")
    assert "Data path does not exist" in message and "no-such-folder" in message
    assert "demo:mnist" in message  # says what would be valid
    assert not (tmp_path / "r").exists()  # a failed fit leaves no half-made run folder behind


def test_empty_folder(cli_error, tmp_path):
    (tmp_path / "empty").mkdir()
    message = cli_error("fit", "--data", tmp_path / "empty", "--model", "tiny-cnn", "--out", tmp_path / "r")
    assert "is empty" in message and "subfolder named after the class" in message


def test_class_folder_without_images(cli_error, tmp_path):
    data = write_color_images(tmp_path / "data", per_class=3, classes=("red", "blue"))
    (data / "green").mkdir()
    (data / "green" / "notes.txt").write_text("not an image")
    message = cli_error("fit", "--data", data, "--model", "tiny-cnn", "--out", tmp_path / "r")
    assert "Class folder 'green'" in message and "has no images" in message


def test_corrupt_image_is_named(cli_error, tmp_path):
    data = write_color_images(tmp_path / "data", per_class=3, classes=("red", "blue"))
    (data / "red" / "broken.png").write_bytes(b"\x89PNG but not really")
    message = cli_error("fit", "--data", data, "--model", "tiny-cnn", "--out", tmp_path / "r")
    assert "Unreadable image file" in message and "broken.png" in message
    assert "--skip-bad-files" in message


def test_non_image_file_in_a_table_is_named(cli_error, tmp_path):
    write_color_images(tmp_path, per_class=2, classes=("red", "blue"))
    (tmp_path / "notes.txt").write_text("just text")
    table = _csv(tmp_path / "images.csv", "image,label\nred/0.png,red\nblue/0.png,blue\nnotes.txt,red\n")
    message = cli_error("fit", "--data", table, "--model", "tiny-cnn", "--out", tmp_path / "r")
    assert "Unreadable image file" in message and "notes.txt" in message


def test_skip_bad_files_skips_with_a_warning_naming_the_file(cli, tmp_path, caplog):
    data = write_color_images(tmp_path / "data", per_class=10)
    (data / "red" / "broken.png").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        result = cli("fit", "--data", data, "--model", "tiny-cnn", "--image-size", 16, "--skip-bad-files",
                     "--out", tmp_path / "r")
    assert result.code == 0, result.err
    assert any("broken.png" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_val"] + metrics["n_test"] == 30  # the 30 good images, not 31


def test_table_missing_the_named_column_lists_the_columns(cli_error, tmp_path, reviews_csv):
    message = cli_error("fit", "--data", reviews_csv, "--label-column", "sentiment", "--model", "tiny-text",
                        "--out", tmp_path / "r")
    assert "no label column 'sentiment'" in message
    assert "columns found: 'text', 'label'" in message and "--label-column" in message


def test_table_without_text_or_image_column(cli_error, tmp_path):
    table = _csv(tmp_path / "t.csv", "review,label\ngood,pos\nbad,neg\n")
    message = cli_error("fit", "--data", table, "--model", "tiny-text", "--out", tmp_path / "r")
    assert "neither a text column 'text' nor an image column 'image'" in message
    assert "'review', 'label'" in message


@pytest.mark.parametrize("kind", ["table", "folder"])
def test_fewer_than_two_classes(cli_error, tmp_path, kind):
    if kind == "table":
        data = _csv(tmp_path / "one.csv", "text,label\nhello,a\nworld,a\nagain,a\n")
    else:
        data = write_color_images(tmp_path / "one", per_class=3, classes=("red",))
    model = "tiny-text" if kind == "table" else "tiny-cnn"
    message = cli_error("fit", "--data", data, "--model", model, "--out", tmp_path / "r")
    assert "only one class" in message and "at least two classes" in message


def test_non_numeric_regression_target(cli_error, tmp_path):
    table = _csv(tmp_path / "reg.csv", "text,label\nhello,1.5\nworld,lots\nagain,3\n")
    message = cli_error("fit", "--data", table, "--task", "regression", "--model", "tiny-text", "--out", tmp_path / "r")
    assert "non-numeric" in message and "'lots'" in message and "data row 2" in message


def test_text_that_is_not_utf8(cli_error, tmp_path):
    table = tmp_path / "latin1.csv"
    table.write_bytes("text,label\ncaf\u00e9 cr\u00e8me,pos\nbad,neg\n".encode("latin-1"))
    message = cli_error("fit", "--data", table, "--model", "tiny-text", "--out", tmp_path / "r")
    assert "latin1.csv is not valid UTF-8" in message and "0xe9" in message and "re-save it as UTF-8" in message


# ---- names and options -------------------------------------------------------------------------------------

def test_unknown_backbone_suggests_close_matches(cli_error, tmp_path, reviews_csv):
    message = cli_error("fit", "--data", reviews_csv, "--model", "efficientnet_lite", "--out", tmp_path / "r")
    assert "Unknown backbone 'efficientnet_lite'" in message and "'efficientnet_lite0'" in message
    assert "Did you mean" in message and "timm:<name>" in message


def test_unknown_strategy_suggests_close_matches(cli_error, tmp_path, reviews_csv):
    message = cli_error("fit", "--data", reviews_csv, "--model", "tiny-text", "--strategy", "gradul",
                        "--out", tmp_path / "r")
    assert "Unknown strategy 'gradul'. Did you mean 'gradual'" in message  # the closest match comes first
    assert "feature-extraction" in message  # the valid choices


def test_unknown_timm_model_suggests_names(cli_error):
    message = cli_error("inspect", "timm:resnet1")
    assert "Unknown timm model 'resnet1'" in message and "'resnet18'" in message


def test_option_of_another_strategy(cli_error, tmp_path, reviews_csv):
    message = cli_error("fit", "--data", reviews_csv, "--model", "tiny-text", "--strategy", "full", "--alpha", 0.1,
                        "--out", tmp_path / "r")
    assert "Strategy 'full' has no option 'alpha'" in message and "head_warmup" in message


def test_misspelled_strategy_option_in_a_config_file(cli_error, tmp_path, reviews_csv):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data": str(reviews_csv), "model": "tiny-text", "strategy": "partial",
                                      "strategy_options": {"freez": 1}}))
    message = cli_error("fit", "--config", config, "--out", tmp_path / "r")
    assert "Strategy 'partial' has no option 'freez'. Did you mean 'freeze'?" in message


def test_misspelled_config_key(cli_error, tmp_path, reviews_csv):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data": str(reviews_csv), "model": "tiny-text", "epoch": 3}))
    message = cli_error("fit", "--config", config, "--out", tmp_path / "r")
    assert "Unknown config key 'epoch'. Did you mean 'epochs'?" in message


def test_missing_config_file(cli_error, tmp_path):
    message = cli_error("fit", "--config", tmp_path / "nope.yaml", "--out", tmp_path / "r")
    assert "Config file not found" in message and "nope.yaml" in message


def test_logistic_head_needs_feature_extraction(cli_error, tmp_path, reviews_csv):
    message = cli_error("fit", "--data", reviews_csv, "--model", "tiny-text", "--strategy", "gradual",
                        "--head", "logistic", "--out", tmp_path / "r")
    assert "--head logistic fits on cached features only" in message
    assert "--strategy feature-extraction" in message and "linear, mlp" in message


@pytest.mark.parametrize(("model", "data_fixture", "reads", "holds"), [
    ("tiny-cnn", "reviews_csv", "image", "text"),
    ("tiny-text", "color_images", "text", "image"),
])
def test_backbone_of_the_wrong_modality(cli_error, tmp_path, request, model, data_fixture, reads, holds):
    data = request.getfixturevalue(data_fixture)
    message = cli_error("fit", "--data", data, "--model", model, "--out", tmp_path / "r")
    assert f"Backbone '{model}' reads {reads}" in message and f"holds {holds}" in message
    assert f"pick a {holds} backbone" in message


def test_weights_file_for_a_backbone_that_takes_none(cli_error, tmp_path, color_images):
    message = cli_error("fit", "--data", color_images, "--model", "tiny-cnn", "--weights", tmp_path / "w.pth",
                        "--out", tmp_path / "r")
    assert "does not take --weights" in message


def test_non_positive_epochs(cli_error, tmp_path, color_images):
    message = cli_error("fit", "--data", color_images, "--model", "tiny-cnn", "--epochs", 0, "--out", tmp_path / "r")
    assert "--epochs must be a positive integer, got 0" in message


def test_fit_without_out(cli_error, color_images):
    assert "pass --out DIR" in cli_error("fit", "--data", color_images, "--model", "tiny-cnn")


# ---- run folders ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_folder_that_is_not_a_run(cli_error, tmp_path, color_images, command):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    extra = ["--data", color_images] if command == "evaluate" else [color_images / "red" / "0.png"]
    message = cli_error(command, folder, *extra)
    assert "not-a-run is not a transferkit run" in message and "transferkit.json is missing" in message


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_missing_run_folder(cli_error, tmp_path, color_images, command):
    extra = ["--data", color_images] if command == "evaluate" else [color_images / "red" / "0.png"]
    assert "Run folder not found" in cli_error(command, tmp_path / "gone", *extra)


def test_damaged_model_metadata(cli_error, copy_run, fe_image_run, color_images):
    run = copy_run(fe_image_run)
    (run / "model" / "transferkit.json").write_text("{not json")
    message = cli_error("predict", run, color_images / "red" / "0.png")
    assert "transferkit.json is damaged" in message and "re-run fit" in message


def test_unfinished_run_for_evaluate(cli_error, copy_run, fe_image_run, color_images):
    run = copy_run(fe_image_run)
    (run / "metrics.json").unlink()
    message = cli_error("evaluate", run, "--data", color_images)
    assert "unfinished run (no metrics.json)" in message and "--resume" in message


def test_evaluate_data_with_unknown_classes(cli_error, tmp_path, fe_image_run):
    holdout = write_color_images(tmp_path / "holdout", per_class=2, classes=("red", "blue"))
    (holdout / "purple").mkdir()
    (holdout / "red" / "0.png").rename(holdout / "purple" / "0.png")
    message = cli_error("evaluate", fe_image_run, "--data", holdout)
    assert "not among the training classes" in message and "'purple' (1 samples)" in message
    assert "'blue', 'green', 'red'" in message


def test_predict_missing_and_corrupt_images(cli_error, tmp_path, fe_image_run):
    message = cli_error("predict", fe_image_run, tmp_path / "ghost.png")
    assert "is an existing file" in message and "ghost.png" in message
    (tmp_path / "bad.png").write_bytes(b"nope")
    message = cli_error("predict", fe_image_run, tmp_path / "bad.png")
    assert "Unreadable image file" in message and "bad.png" in message and "--skip-bad-files" in message


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_holding_a_finished_run_is_refused_and_untouched(cli_error, fe_image_run, color_images):
    before = _snapshot(fe_image_run)
    message = cli_error("fit", "--data", color_images, "--model", "tiny-cnn", "--image-size", 16,
                        "--out", fe_image_run)
    assert "already holds a finished run; choose another --out" in message
    assert _snapshot(fe_image_run) == before


def test_out_holding_other_files_is_refused(cli_error, tmp_path, color_images):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious")
    message = cli_error("fit", "--data", color_images, "--model", "tiny-cnn", "--out", tmp_path / "busy")
    assert "already holds other files" in message
    assert (tmp_path / "busy" / "thesis.tex").read_text() == "precious"


def test_resume_with_a_different_config_is_refused_and_untouched(cli_error, copy_run, fe_image_run, color_images):
    run = copy_run(fe_image_run)
    (run / "metrics.json").unlink()  # an interrupted run
    before = _snapshot(run)
    message = cli_error("fit", "--data", color_images, "--model", "tiny-cnn", "--image-size", 32,
                        "--out", run, "--resume")
    assert "Cannot resume" in message and "config differs in image_size" in message
    assert _snapshot(run) == before


def test_resume_of_a_finished_run_is_refused_and_untouched(cli_error, fe_image_run):
    before = _snapshot(fe_image_run)
    message = cli_error("fit", "--out", fe_image_run, "--resume")
    assert "it is a finished run" in message
    assert _snapshot(fe_image_run) == before


def test_resume_of_a_folder_that_is_not_a_run(cli_error, tmp_path):
    (tmp_path / "empty").mkdir()
    message = cli_error("fit", "--out", tmp_path / "empty", "--resume")
    assert "Cannot resume" in message and "not a transferkit run (no config.yaml)" in message


def test_failed_fit_leaves_out_free_for_the_next_attempt(cli, cli_error, tmp_path, reviews_csv):
    out = tmp_path / "r"
    cli_error("fit", "--data", reviews_csv, "--label-column", "sentiment", "--model", "tiny-text", "--out", out)
    assert cli("fit", "--data", reviews_csv, "--model", "tiny-text", "--out", out).code == 0


# ---- --debug and the console ---------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_raises_with_traceback(cli, tmp_path, where):
    argv = ["fit", "--data", tmp_path / "missing", "--model", "tiny-cnn", "--out", tmp_path / "r"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(DataError, match="Data path does not exist"):
        cli(*argv)


def test_console_exit_code_and_one_line(tmp_path):
    """The installed `transferkit` command (or `python -m transferkit.cli`) exits with 2 and one line."""
    script = Path(sys.executable).with_name("transferkit")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "transferkit.cli"]
    env = {**os.environ, "TRANSFERKIT_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command + ["evaluate", str(tmp_path / "gone"), "--data", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"transferkit: error: Run folder not found: {tmp_path / 'gone'}."]
    assert done.stdout == ""


def test_every_error_class_exits_with_code_2():
    import transferkit.errors as errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, TransferkitError)]
    assert len(classes) >= 5
    assert {c.exit_code for c in classes} == {2}


def test_suggest_lists_close_matches_only():
    assert suggest("gradul", ["gradual", "full", "lora"]) == " Did you mean 'gradual'?"
    assert suggest("zzz", ["gradual", "full"]) == ""


def test_text_run_on_unknown_labels_in_a_table(cli_error, tmp_path, text_run):
    holdout = write_reviews(tmp_path / "holdout.csv", per_class=2)
    holdout.write_text(holdout.read_text().replace(",neg", ",meh"), encoding="utf-8")
    message = cli_error("evaluate", text_run, "--data", holdout)
    assert "'meh' (2 samples)" in message and "known classes: 'neg', 'pos'" in message
