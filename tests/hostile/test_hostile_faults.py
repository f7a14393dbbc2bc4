"""Issue 10, family 4: faults lose nothing (Ctrl-C and SIGKILL, full disks, concurrent runs, tune resumed)."""

from __future__ import annotations

import shutil
import signal
import sqlite3

import pytest
from hostile_kit import (SLOW_FIT, assert_ok, assert_one_line, checkpoint_written, run_cli, stop, stray_temp_files,
                         tree_state, wait_for)
from synthetic_data import write_color_images


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    """Enough images that extracting features at 160 px one by one takes a couple of seconds."""
    return write_color_images(tmp_path_factory.mktemp("many") / "colors", per_class=60)


def _temp_in(folder) -> bool:
    return folder.exists() and any(".tmp" in p.name for p in folder.rglob("*"))


# ---- fit: killed during feature caching and mid-epoch --------------------------------------------------------

@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, id="sigint"), pytest.param(signal.SIGKILL, id="sigkill")])
def test_fit_killed_during_feature_caching(spawn, tk, tmp_path, many_images, sig):
    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = ["fit", "--data", many_images, "--model", "tiny-cnn", "--image-size", "160", "--batch-size", "1",
            "--feature-cache", cache, "--out", out]
    proc = spawn(*argv)
    wait_for(lambda: _temp_in(cache), proc, what="feature caching to start")
    result = stop(proc, sig)
    if sig == signal.SIGINT:
        assert_one_line(result, 130, "interrupted", f"transferkit fit --out {out} --resume")
        assert not stray_temp_files(cache, out), "Ctrl-C left temporary files"
    assert_ok(tk("fit", "--out", out, "--resume"))
    assert (out / "metrics.json").is_file()
    assert not stray_temp_files(cache, out), "the next run left the killed run's temporary files"


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, id="sigint"), pytest.param(signal.SIGKILL, id="sigkill")])
def test_fit_killed_mid_epoch_resumes(spawn, tk, tmp_path, images, sig):
    out = tmp_path / "run"
    proc = spawn("fit", "--data", images, *SLOW_FIT, "--out", out)
    wait_for(lambda: checkpoint_written(out), proc, what="the first checkpoint")
    result = stop(proc, sig)
    if sig == signal.SIGINT:
        assert_one_line(result, 130, "interrupted", f"transferkit fit --out {out} --resume")
    assert_ok(tk("fit", "--out", out, "--resume"))
    assert (out / "metrics.json").is_file()
    assert not stray_temp_files(out)


def test_fit_killed_right_after_creating_its_folder_resumes(spawn, tk, tmp_path, images):
    """SIGKILL before the first checkpoint: whatever lock the dead process held is stale and taken over."""
    out = tmp_path / "run"
    proc = spawn("fit", "--data", images, *SLOW_FIT, "--out", out)
    wait_for(lambda: (out / "config.yaml").is_file(), proc, what="the run folder")
    stop(proc, signal.SIGKILL)
    assert_ok(tk("fit", "--out", out, "--resume"))
    assert (out / "metrics.json").is_file()


# ---- compare, tune and export interrupted ------------------------------------------------------------------

def test_compare_interrupted_then_rerun(spawn, tk, tmp_path, images):
    out = tmp_path / "cmp"
    argv = ["compare", "--data", images, "--model", "tiny-cnn", "--strategies", "full", "--train-per-class", "all",
            "--seeds", "1", "--epochs", "40", "--patience", "0", "--batch-size", "4", "--out", out]
    proc = spawn(*argv)
    wait_for(lambda: any(checkpoint_written(c) for c in out.glob("cells/*")), proc, what="the first cell checkpoint")
    assert_one_line(stop(proc), 130, "interrupted", "transferkit compare", str(out))
    assert_ok(tk(*argv))
    assert (out / "comparison.csv").is_file() and not stray_temp_files(out)


def test_tune_interrupted_then_rerun(spawn, tk, tmp_path, images):
    out = tmp_path / "tune"
    argv = ["tune", "--data", images, "--model", "tiny-cnn", "--strategies", "full", "--trials", "2", "--epochs", "30",
            "--patience", "0", "--batch-size", "4", "--out", out]
    proc = spawn(*argv)
    wait_for(lambda: checkpoint_written(out / "trials" / "trial-000"), proc, what="the first trial checkpoint")
    assert_one_line(stop(proc), 130, "interrupted", "transferkit tune", str(out))
    assert_ok(tk(*argv))
    assert (out / "trials.csv").is_file() and not stray_temp_files(out)


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, id="sigint"), pytest.param(signal.SIGKILL, id="sigkill")])
def test_export_interrupted_leaves_export_as_it_was(spawn, tk, tmp_path, finished_run, sig):
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = tree_state(run)
    proc = spawn("export", run)
    wait_for(lambda: any(p.name.startswith(".export.") for p in run.iterdir()), proc, what="export staging")
    result = stop(proc, sig)
    if sig == signal.SIGINT:
        assert_one_line(result, 130, "interrupted", f"transferkit export {run}")
        assert tree_state(run) == before, "an interrupted export changed the run folder"
    assert_ok(tk("export", run))
    assert (run / "export" / "model.onnx").is_file() and not stray_temp_files(run)


# ---- full disks ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["out", "feature-cache"])
def test_full_disk_is_one_line(tk, tmp_path, images, disk, where):
    disk = disk("4k" if where == "feature-cache" else "48k")
    out = disk / "run" if where == "out" else tmp_path / "run"
    argv = ["fit", "--data", images, "--model", "tiny-cnn", "--out", out]
    if where == "feature-cache":
        argv += ["--feature-cache", disk / "cache"]
    line = assert_one_line(tk(*argv), 2)
    assert any(w in line.lower() for w in ("space", "disk", "full")), line
    assert not stray_temp_files(disk), "a full disk left partial files"


# ---- concurrency ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("resume", [
    pytest.param(False, id="second-fit"),
    pytest.param(True, id="second-fit-resume")])
def test_second_fit_into_a_busy_run_folder_names_the_holder(spawn, tk, tmp_path, images, resume):
    out = tmp_path / "run"
    first = spawn("fit", "--data", images, *SLOW_FIT, "--out", out)
    wait_for(lambda: (out / "config.yaml").is_file(), first, what="the first fit's run folder")
    second = tk("fit", "--data", images, *SLOW_FIT, "--out", out, *(["--resume"] if resume else []))
    still_running = first.poll() is None
    stop(first, signal.SIGKILL)
    assert_one_line(second, 2, str(first.pid))
    assert still_running, "the first fit ended before the second was refused; the case proves nothing"


# ---- tune: a resumed study ---------------------------------------------------------------------------------

TUNE = ("--model", "tiny-cnn", "--strategies", "full", "--epochs", "2", "--batch-size", "8")


@pytest.fixture(scope="module")
def two_trials(tmp_path_factory, images, launcher):
    """A tune folder holding a finished study of 2 trials (read-only: copy it)."""
    out = tmp_path_factory.mktemp("tune") / "study"
    assert_ok(run_cli(launcher, "tune", "--data", images, *TUNE, "--trials", "2", "--out", out))
    return out


def _params(study) -> list[tuple]:
    with sqlite3.connect(study / "study.db") as db:
        rows = db.execute("SELECT trial_id, param_name, param_value FROM trial_params").fetchall()
    trials: dict[int, dict] = {}
    for trial, name, value in rows:
        trials.setdefault(trial, {})[name] = value
    return [tuple(sorted(p.items())) for p in trials.values()]


def test_tune_resumed_never_repeats_parameters(tk, two_trials, images, tmp_path):
    study = shutil.copytree(two_trials, tmp_path / "study")
    assert_ok(tk("tune", "--data", images, *TUNE, "--trials", "4", "--out", study))
    params = _params(study)
    assert len(params) == 4 and len(set(params)) == 4, f"repeated parameter sets: {params}"


def test_tune_into_the_same_out_with_other_settings_is_refused(tk, two_trials, images, tmp_path):
    study = shutil.copytree(two_trials, tmp_path / "study")
    before = tree_state(study)
    argv = ["tune", "--data", images, *TUNE, "--trials", "3", "--out", study]
    argv[argv.index("--epochs") + 1] = "5"
    assert_one_line(tk(*argv), 2, "epochs")
    assert tree_state(study) == before
