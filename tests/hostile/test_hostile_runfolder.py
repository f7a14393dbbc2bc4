"""Issue 10, family 3: a run folder is what it says it is (resume, copies, permissions, pickles)."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from hostile_kit import SLOW_FIT, assert_ok, assert_one_line, image_table, run_cli, tree_state, undecodable_png


def _data_of(run) -> str:
    return yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["data"]


def _redirect_data(run, data) -> None:
    """Point a copied unfinished run at its own copy of the data (so the test may change it)."""
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    config["data"] = str(data)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def test_resume_refuses_data_changed_under_the_same_path(tk, copy_unfinished, tmp_path):
    run = copy_unfinished()
    data = shutil.copytree(_data_of(run), tmp_path / "data")
    _redirect_data(run, data)
    # One label now lies: a blue image (mirrored, so no duplicate of a training image) named as red.
    Image.open(data / "blue" / "0.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(data / "red" / "0.png")
    before = tree_state(run)
    assert_one_line(tk("fit", "--out", run, "--resume"), 2, "data", "changed")
    assert tree_state(run) == before


def test_resume_refuses_a_different_flag_without_data(tk, copy_unfinished):
    run = copy_unfinished()
    before = tree_state(run)
    assert_one_line(tk("fit", "--out", run, "--resume", "--epochs", "3"), 2, "epochs")
    assert tree_state(run) == before


def test_resume_refuses_a_different_flag_with_data(tk, copy_unfinished):
    run = copy_unfinished()
    before = tree_state(run)
    argv = ["fit", "--data", _data_of(run), *SLOW_FIT, "--out", run, "--resume", "--lr", "0.5"]
    assert_one_line(tk(*argv), 2, "lr")
    assert tree_state(run) == before


def test_a_copied_run_resumes_from_its_own_checkpoints(tk, copy_unfinished):
    """Lightning saves best_model_path absolute: a copy must not end with the original's best weights."""
    original, copy = copy_unfinished("original"), copy_unfinished("copy")
    best = original / "checkpoints" / "best.ckpt"
    state = torch.load(best, map_location="cpu", weights_only=True)
    state["state_dict"] = {k: v * 0 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(state, best)  # the original's best now holds zeros: a copy reading it ends with zeros
    before = tree_state(original)
    assert_ok(tk("fit", "--out", copy, "--resume"))
    assert tree_state(original) == before, "resuming the copy changed the original run"
    from safetensors.torch import load_file

    weights = load_file(str(copy / "model" / "model.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "weight" in k), "the copy took the original's best"
    for ckpt in (copy / "checkpoints").glob("*.ckpt"):
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        for name, cb in saved.get("callbacks", {}).items():
            path = cb.get("best_model_path") if isinstance(cb, dict) else None
            assert not path or str(original) not in path, f"{ckpt.name} points into the original: {path}"


def test_a_fit_failing_after_its_folder_leaves_nothing_blocking(tk, tmp_path, images):
    """Undecodable pixels fail the first batch, after the run folder exists; the corrected run must go."""
    table, _ = image_table(tmp_path, images, "bad.png", undecodable_png)
    out = tmp_path / "run"
    argv = ["fit", "--data", table, "--model", "tiny-cnn", "--out", out]
    first = tk(*argv)
    assert first.code == 2, first.text[-2000:]
    assert_ok(tk(*argv, "--skip-bad-files"))
    assert (out / "metrics.json").is_file()


def _modes(root) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_run_files_follow_the_umask(tk, tmp_path, images):
    out = tmp_path / "run"
    assert_ok(tk("fit", "--data", images, "--model", "tiny-cnn", "--out", out, umask=0o022))
    assert_ok(tk("export", out, umask=0o022))
    wrong = {k: oct(m) for k, m in _modes(out).items()
             if m & 0o044 != 0o044 or ((out / k).is_dir() and m & 0o011 != 0o011)}
    assert not wrong, f"not readable by group and others under umask 022: {wrong}"


@pytest.fixture(scope="module")
def pickled_resume(unfinished_run, tmp_path_factory, launcher):
    """Resume a run whose last.ckpt carries a pickle that would write a marker file: (Result, marker)."""
    run = Path(shutil.copytree(unfinished_run, tmp_path_factory.mktemp("pickled") / "run"))
    marker = run.parent / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    last = run / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    state["hostile"] = Payload()
    torch.save(state, last)
    return run_cli(launcher, "fit", "--out", run, "--resume"), marker


def test_a_pickle_in_a_checkpoint_never_runs(pickled_resume):
    result, marker = pickled_resume
    assert not marker.exists(), f"a pickle in a user's checkpoint ran code:\n{result.text[-2000:]}"


def test_a_pickle_in_a_checkpoint_is_refused_in_one_line(pickled_resume):
    assert_one_line(pickled_resume[0], 2, "last.ckpt")


def test_evaluate_reads_only_the_run_it_is_given(tk, finished_run, images, tmp_path):
    """Baseline: a finished run evaluates on its data and is left exactly as it was."""
    run = shutil.copytree(finished_run, tmp_path / "run")
    before = tree_state(run)
    result = tk("evaluate", run, "--data", images, "--out", tmp_path / "evaluation.json")
    assert_ok(result)  # evaluate prints a table; its JSON goes to --out (issue 11)
    assert np.isfinite(json.loads((tmp_path / "evaluation.json").read_text())["metrics"]["accuracy"])
    assert tree_state(run) == before
