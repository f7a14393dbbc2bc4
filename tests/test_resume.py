"""A run folder is what it says it is: resume checks its flags and data, reads only its own checkpoints
(as plain weights), and a failed or diverged fit leaves nothing blocking and saves no model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import transferkit
from transferkit.data import LabeledData
from transferkit.errors import RunFolderError, TrainingDivergedError, WeightsFileError
from transferkit.locks import LOCK_FILE
from transferkit.training import runfolder
from transferkit.training.fit import RunCheckpoint, check_finite_weights


def _fit_full(out: Path, data: Path) -> Path:
    transferkit.fit(data=str(data), model="tiny-cnn", strategy="full", epochs=2, image_size=16, probe_init=False,
                    out=str(out), progress=False)
    return out


@pytest.fixture(scope="module")
def own_data(tmp_path_factory, color_images) -> Path:
    """A private copy of the colour images: tests may change a file and restore it."""
    return Path(shutil.copytree(color_images, tmp_path_factory.mktemp("data") / "colors"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, own_data) -> Path:
    """A finished 2-epoch full fine-tuning run on `own_data` (read-only: copy it with `resumable`)."""
    return _fit_full(tmp_path_factory.mktemp("runs") / "full", own_data)


def _resumable(run: Path, where: Path) -> Path:
    """A copy of a finished run made after its last checkpoint, before its results: resumable."""
    copy = Path(shutil.copytree(run, where))
    shutil.rmtree(copy / "model")
    (copy / "metrics.json").unlink()
    return copy


# ---- a copied run reads its own checkpoints ----------------------------------------------------------------

def test_a_copy_made_after_the_last_epoch_resumes_from_its_own_best_checkpoint(tmp_path, own_data):
    original = _fit_full(tmp_path / "original", own_data)
    trained = load_file(str(original / "model" / "model.safetensors"))
    copy = _resumable(original, tmp_path / "copy")
    best = original / "checkpoints" / "best.ckpt"
    state = torch.load(best, map_location="cpu", weights_only=True)
    state["state_dict"] = {k: torch.zeros_like(v) if v.is_floating_point() else v
                           for k, v in state["state_dict"].items()}
    torch.save(state, best)  # the original's best.ckpt now holds zeros; the copy must never read it
    transferkit.resume(copy, progress=False)
    resumed = load_file(str(copy / "model" / "model.safetensors"))
    assert resumed.keys() == trained.keys()
    for name, value in trained.items():
        assert torch.equal(resumed[name], value), f"{name}: the copy did not end with its own best weights"


def test_checkpoint_paths_are_rebased_onto_the_own_folder_and_never_leave_it(tmp_path):
    own = tmp_path / "copy" / "checkpoints"
    callback = RunCheckpoint(dirpath=own, filename="best", monitor="val/accuracy", mode="max")
    saved = "/elsewhere/original/checkpoints"
    callback.load_state_dict({
        "dirpath": saved, "best_model_score": torch.tensor(0.9), "best_model_path": f"{saved}/best.ckpt",
        "kth_best_model_path": f"{saved}/../../secret.ckpt", "last_model_path": "/etc/other.ckpt", "kth_value": 0.9,
        "best_k_models": {f"{saved}/best.ckpt": torch.tensor(0.9), "/etc/other.ckpt": torch.tensor(1.0)}})
    assert callback.best_model_path == str(own.resolve() / "best.ckpt")
    assert callback.kth_best_model_path == "" and callback.last_model_path == ""
    assert list(callback.best_k_models) == [str(own.resolve() / "best.ckpt")]
    assert float(callback.best_model_score) == pytest.approx(0.9)  # restored, not dropped as Lightning would
    assert callback.state_key.startswith("ModelCheckpoint{")  # checkpoints of earlier versions still restore


# ---- resume checks its flags and its data ------------------------------------------------------------------

def test_resume_refuses_a_flag_that_differs_from_the_saved_config(finished, tmp_path, cli_error):
    copy = _resumable(finished, tmp_path / "copy")
    with pytest.raises(RunFolderError, match=r"config differs in epochs \(2 there, 5 now\)"):
        transferkit.resume(copy, progress=False, epochs=5)
    line = cli_error("fit", "--out", copy, "--resume", "--lr", "0.5")
    assert "config differs in lr (" in line and "0.5 now)" in line
    assert not (copy / "metrics.json").exists()
    transferkit.resume(copy, progress=False, epochs=2, model="tiny-cnn")  # the same values are no change
    assert (copy / "metrics.json").is_file()


def test_resume_refuses_data_whose_content_changed_under_the_same_path(finished, own_data, tmp_path):
    copy = _resumable(finished, tmp_path / "copy")
    image = own_data / "red" / "0.png"
    original = image.read_bytes()
    try:
        Image.open(own_data / "blue" / "1.png").transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(image)
        with pytest.raises(RunFolderError, match=r"data changed since the run began \(the content of the \w+"):
            transferkit.resume(copy, progress=False)
    finally:
        image.write_bytes(original)
    assert not (copy / "metrics.json").exists() and not (copy / LOCK_FILE).exists()


def test_the_run_folder_records_its_data_and_package_versions(finished):
    import json

    record = json.loads((finished / runfolder.PROVENANCE_FILE).read_text())
    assert set(record["data"]) == {"train", "val", "test"} and all(len(v) == 40 for v in record["data"].values())
    assert record["versions"]["transferkit"] == transferkit.__version__ and record["versions"]["torch"]
    assert set(record["versions"]) == {"transferkit", "torch", "timm", "transformers", "lightning"}


def test_the_data_fingerprint_follows_content_not_paths(own_data, tmp_path):
    moved = Path(shutil.copytree(own_data, tmp_path / "moved"))
    paths = sorted(str(p.relative_to(own_data)) for p in own_data.rglob("*.png"))

    def data(root: Path) -> LabeledData:
        return LabeledData([str(root / p) for p in paths], None, "image", "classification", None, "d")

    assert data(moved).fingerprint() == data(own_data).fingerprint()
    before = data(moved).fingerprint()
    target = moved / paths[0]
    stat = target.stat()
    target.write_bytes(target.read_bytes()[:-1] + b"\x00")  # same size, same mtime: only the bytes differ
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert data(moved).fingerprint() != before


# ---- checkpoints are plain weights -------------------------------------------------------------------------

def test_a_pickle_in_last_ckpt_is_refused_and_never_runs(finished, tmp_path):
    copy = _resumable(finished, tmp_path / "copy")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    last = copy / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    state["hostile"] = Payload()
    torch.save(state, last)
    with pytest.raises(WeightsFileError, match=r"last\.ckpt holds objects other than weights"):
        transferkit.resume(copy, progress=False)
    assert not marker.exists()


# ---- a failed fit leaves nothing blocking; a diverged model is never saved -----------------------------------

def test_a_folder_that_never_reached_a_checkpoint_is_replaced_but_one_with_checkpoints_is_kept(tmp_path, finished):
    unstarted = tmp_path / "unstarted"
    (unstarted / "logs" / "attempt1").mkdir(parents=True)
    shutil.copy(finished / "config.yaml", unstarted / "config.yaml")
    (unstarted / LOCK_FILE).write_text("{}")
    config = transferkit.build_config(unstarted / "config.yaml", out=str(unstarted))
    assert runfolder.never_started(unstarted)
    runfolder.check_run_folder(config, resume=False)  # accepted: nothing there to lose
    started = Path(shutil.copytree(finished, tmp_path / "started"))
    (started / "metrics.json").unlink()
    shutil.rmtree(started / "model")
    assert not runfolder.never_started(started)
    with pytest.raises(RunFolderError, match="already holds an unfinished run"):
        runfolder.check_run_folder(config.replace(out=str(started)), resume=False)
    with pytest.raises(RunFolderError, match="never cleared"):
        runfolder.clear_unstarted(started)


def test_a_fit_failing_after_its_folder_was_made_removes_it(tmp_path, own_data, monkeypatch):
    from transferkit.training import fit as engine

    def broken(plan, session):
        assert (session.out / "config.yaml").is_file()  # it fails after the folder was written
        raise TrainingDivergedError("Training diverged: on purpose.")

    monkeypatch.setattr(engine, "train", broken)
    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="on purpose"):
        transferkit.fit(data=str(own_data), model="tiny-cnn", image_size=16, out=str(out), progress=False)
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(TrainingDivergedError):
        transferkit.fit(data=str(own_data), model="tiny-cnn", image_size=16, out=str(kept), progress=False)
    assert kept.is_dir() and not any(kept.iterdir())  # a folder the user made stays, emptied of the run


def test_a_model_with_non_finite_weights_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    check_finite_weights(model, SimpleNamespace(lr=0.1))
    model[1].running_var[0] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"non-finite weights \(1\.running_var\).*--lr \(now 0\.1\)"):
        check_finite_weights(model, SimpleNamespace(lr=0.1))


# ---- one process per folder --------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys
    from transferkit.locks import hold_lock

    with hold_lock(sys.argv[1], sys.argv[2]):
        print("held", flush=True)
        sys.stdin.readline()
""")


@pytest.mark.parametrize("command", ["fit", "compare"])
def test_a_folder_held_by_a_live_process_is_refused_naming_it(tmp_path, color_images, command):
    folder = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), command], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        options = dict(data=str(color_images), model="tiny-cnn", image_size=16, out=str(folder), progress=False)
        with pytest.raises(RunFolderError, match=rf"in use by PID {holder.pid} \({command}"):
            if command == "fit":
                transferkit.fit(**options)
            else:
                transferkit.compare(strategies="feature-extraction", train_per_class="all", seeds=1, **options)
        assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]  # nothing written beside the holder
    finally:
        holder.kill()
        holder.wait()


def test_resume_config_is_the_saved_one_even_when_moved(finished, tmp_path):
    copy = _resumable(finished, tmp_path / "moved")
    saved = yaml.safe_load((copy / "config.yaml").read_text())
    assert saved["out"] == str(finished)
    transferkit.resume(copy, progress=False)
    assert yaml.safe_load((copy / "config.yaml").read_text())["out"] == str(copy)
