"""Issue 10, family 1: one error boundary. Bad options, YAML, tampered model folders, read-only output."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from hostile_kit import assert_ok, assert_one_line, fit_args, tree_state


# ---- options: refused in one line before anything is written ---------------------------------------------

BAD_OPTIONS = [
    pytest.param(["--seed", "-1"], ["seed"], id="seed-negative"),
    pytest.param(["--weight-decay", "-5"], ["weight"], id="weight-decay-negative"),
    pytest.param(["--num-workers", "-1"], ["workers"], id="num-workers-negative"),
    pytest.param(["--C", "-1"], ["C"], id="C-negative"),
    pytest.param(["--patience", "-1"], ["patience"], id="patience-negative"),
    pytest.param(["--lr", "0"], ["lr"], id="lr-zero"),
    pytest.param(["--lr", "nan"], ["lr"], id="lr-nan"),
    pytest.param(["--lr", "inf"], ["lr"], id="lr-inf"),
    pytest.param(["--image-size", "100000"], ["image-size"], id="image-size-huge"),
    pytest.param(["--epochs", "0"], ["epochs"], id="epochs-zero"),
    pytest.param(["--val-fraction", "1.5"], ["val-fraction"], id="val-fraction-above-one"),
]


@pytest.mark.parametrize(("extra", "words"), BAD_OPTIONS)
def test_bad_option_is_one_line(tk, images, tmp_path, extra, words):
    out = tmp_path / "run"
    result = tk(*fit_args(images, out, *extra), timeout=90)
    assert_one_line(result, 2, *words)
    assert not out.exists(), "a refused option left a run folder behind"


YAML_CASES = [
    pytest.param('lr: "fast"\n', 2, id="lr-string"),
    pytest.param("lr: 1e-3\n", 0, id="lr-1e-3-works"),
    pytest.param("epochs: 2.5\n", 2, id="epochs-fraction"),
]


@pytest.mark.parametrize(("yaml_text", "code"), YAML_CASES)
def test_yaml_values_are_coerced_or_refused(tk, images, tmp_path, yaml_text, code):
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text + "head: linear\n", encoding="utf-8")
    out = tmp_path / "run"
    result = tk(*fit_args(images, out, "--config", config, "--epochs", "1") if "epochs" not in yaml_text
                else fit_args(images, out, "--config", config))
    if code:
        key = yaml_text.split(":")[0]
        assert_one_line(result, 2, key)
        assert not out.exists()
    else:
        assert_ok(result)
        import yaml

        saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
        assert saved["lr"] == pytest.approx(1e-3) and isinstance(saved["lr"], float)


# ---- tampered model folders: predict, evaluate, export ----------------------------------------------------

def _truncate_weights(run):
    path = run / "model" / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "model.safetensors"


def _garble_meta(run):
    (run / "model" / "transferkit.json").write_text('{"format_version": 1, "backbone": ', encoding="utf-8")
    return "transferkit.json"


def _drop_classes(run):
    return _edit_meta(run, lambda meta: meta.pop("classes"))


def _wrong_width(run):
    return _edit_meta(run, lambda meta: meta.update(num_features=999))


def _future_format(run):
    _edit_meta(run, lambda meta: meta.update(format_version=99))
    return "format"


def _edit_meta(run, change):
    path = run / "model" / "transferkit.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    change(meta)
    path.write_text(json.dumps(meta), encoding="utf-8")
    return "transferkit.json"


TAMPERS = {"truncated-weights": _truncate_weights, "garbled-meta": _garble_meta, "meta-no-classes": _drop_classes,
           "meta-wrong-width": _wrong_width, "meta-format-99": _future_format}
TAMPER_CASES = [
    pytest.param("truncated-weights", "predict", id="truncated-weights-predict"),
    pytest.param("truncated-weights", "evaluate", id="truncated-weights-evaluate"),
    pytest.param("truncated-weights", "export", id="truncated-weights-export"),
    pytest.param("garbled-meta", "predict", id="garbled-meta-predict"),
    pytest.param("meta-no-classes", "predict", id="meta-no-classes-predict"),
    pytest.param("meta-no-classes", "evaluate", id="meta-no-classes-evaluate"),
    pytest.param("meta-no-classes", "export", id="meta-no-classes-export"),
    pytest.param("meta-wrong-width", "predict", id="meta-wrong-width-predict"),
    pytest.param("meta-format-99", "predict", id="meta-format-99-predict"),
    pytest.param("meta-format-99", "export", id="meta-format-99-export"),
]


@pytest.mark.parametrize(("tamper", "cmd"), TAMPER_CASES)
def test_tampered_run_folder_is_one_line(tk, finished_run, images, tmp_path, tamper, cmd):
    run = shutil.copytree(finished_run, tmp_path / "run")
    named = TAMPERS[tamper](run)
    before = tree_state(run)
    argv = {"predict": ["predict", run, images / "red" / "0.png"], "evaluate": ["evaluate", run, "--data", images],
            "export": ["export", run]}[cmd]
    assert_one_line(tk(*argv), 2, named)
    assert tree_state(run) == before, "a refused command changed the run folder"


# ---- environment and the boundary itself -----------------------------------------------------------------

def test_inf_regression_target_is_refused_with_its_row(tk, tmp_path):
    table = tmp_path / "counts.csv"
    rows = ["text,label"] + [f"{'good ' * (i % 5 + 1)}x{i},{i % 5 + 1}" for i in range(30)]
    rows[3] = "good good x2,inf"
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert_one_line(tk(*fit_args(table, out, "--task", "regression")), 2, "label", "row 3")
    assert not out.exists()


def test_a_diverging_fit_stops_at_once_in_one_line(tk, images, tmp_path):
    """A learning rate of 1e6 makes the loss NaN in the second epoch: exit 2 naming where, no model saved."""
    out = tmp_path / "run"
    argv = ["fit", "--data", images, "--model", "tiny-cnn", "--strategy", "full", "--epochs", "3", "--no-probe-init",
            "--lr", "1e6", "--out", out]
    line = assert_one_line(tk(*argv), 2, "diverged", "epoch", "step", "--lr", "another --out")
    assert not (out / "model").exists() and not (out / "metrics.json").exists(), "a diverged model was saved"
    assert (out / "checkpoints" / "last.ckpt").is_file(), f"the earlier epoch's checkpoint was lost: {line}"


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder on a read-only file system (root ignores permission bits, so a read-only tmpfs as root)."""
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o555)
    yield target
    target.chmod(0o755)


@pytest.fixture
def read_only_out(request, read_only_dir):
    """Where a run cannot be written: a read-only tmpfs as root (`disk`), else a folder without write bits."""
    if os.geteuid() != 0:
        return read_only_dir
    return request.getfixturevalue("disk")("1m", read_only=True)


def test_read_only_out_is_one_line(tk, images, read_only_out):
    out = read_only_out / "run"
    line = assert_one_line(tk(*fit_args(images, out)), 2)
    assert str(read_only_out) in line or "--out" in line, line


def test_unexpected_error_is_one_line_exit_1(tk):
    """A bug (here a command that divides by zero) is exit 1, one line, pointing to --debug."""
    code = ("import sys\nfrom transferkit import cli\n"
            "cli.COMMANDS['strategies'] = lambda args: 1 / 0\nsys.exit(cli.main(sys.argv[1:]))")
    assert_one_line(tk("strategies", python_code=code), 1, "internal error", "--debug")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tk, tmp_path, where):
    argv = ["fit", "--data", tmp_path / "missing", "--model", "tiny-cnn", "--out", tmp_path / "run"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    result = tk(*argv)
    assert result.code != 0
    assert "Traceback" in result.text and "missing" in result.text
