"""Faults lose nothing (issue 10): full and read-only disks, killed writers, one line for every failure.

Full disks are real small tmpfs mounts and read-only targets tmpfs mounted read-only: both need root
(mount(2)); elsewhere those tests skip and say why. The CLI runs in-process (`cli` fixture).
"""

from __future__ import annotations

import errno
import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from transferkit import cli as cli_module
from transferkit.errors import DiskSpaceError, NotWritableError
from transferkit.training import features
from transferkit.training.checkpointing import AtomicCheckpointIO
from transferkit.workflows import export as exporting


def _dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("@", "_").replace("/", "_")


def _one_error_line(result) -> str:
    lines = [line for line in (result.out + result.err).splitlines() if line.strip()]
    assert len(lines) == 1, result
    return lines[0]


# ---- checkpoints ------------------------------------------------------------------------------------------

def test_a_checkpoint_that_does_not_fit_leaves_the_previous_one_whole(disk):
    best = disk("64k") / "checkpoints" / "best.ckpt"
    io_plugin = AtomicCheckpointIO()
    io_plugin.save_checkpoint({"w": torch.arange(10.0)}, best)
    with pytest.raises(DiskSpaceError) as info:
        io_plugin.save_checkpoint({"w": torch.randn(100_000)}, best)
    assert f"writing {best};" in str(info.value) and "--out" in str(info.value)
    assert torch.equal(torch.load(best, weights_only=True)["w"], torch.arange(10.0))
    assert [p.name for p in best.parent.iterdir()] == ["best.ckpt"], "a temporary file stayed behind"


def test_a_read_only_checkpoint_folder_is_one_line(disk):
    last = disk("64k", read_only=True) / "checkpoints" / "last.ckpt"
    with pytest.raises(NotWritableError, match="read-only; choose another --out"):
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(3)}, last)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_checkpoints_get_the_users_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(3)}, tmp_path / "last.ckpt")
    finally:
        os.umask(previous)
    assert (tmp_path / "last.ckpt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_first_save_removes_only_temporaries_of_dead_processes_of_this_machine(tmp_path):
    dead, host = _dead_pid(), _host()
    stale = tmp_path / f".last.ckpt.{dead}@{host}.0123abcd.tmp"
    live = tmp_path / f".last.ckpt.{os.getpid()}@{host}.0123abcd.tmp"
    elsewhere = tmp_path / f".last.ckpt.{dead}@another-machine.0123abcd.tmp"
    for path in (stale, live, elsewhere):
        path.write_bytes(b"partial")
    AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(3)}, tmp_path / "last.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["last.ckpt", live.name, elsewhere.name])


# ---- the feature cache ------------------------------------------------------------------------------------

def test_a_full_feature_cache_is_one_line_naming_it_and_the_flag(cli, disk, color_images, tmp_path):
    cache = disk("16k") / "cache"
    result = cli("fit", "--data", color_images, "--model", "tiny-cnn", "--image-size", 16, "--out", tmp_path / "run",
                 "--feature-cache", cache)
    line = _one_error_line(result)
    assert result.code == 2 and f"No space in the feature cache {cache} on " in line, line
    assert "--feature-cache DIR" in line
    assert not [p for p in cache.parent.rglob("*") if p.is_file()], "a full disk kept a partial cache file"


def test_a_read_only_feature_cache_is_one_line(cli, disk, color_images, tmp_path):
    cache = disk("64k", read_only=True) / "cache"
    result = cli("fit", "--data", color_images, "--model", "tiny-cnn", "--image-size", 16, "--out", tmp_path / "run",
                 "--feature-cache", cache)
    line = _one_error_line(result)
    assert result.code == 2 and "read-only" in line and "--feature-cache DIR" in line, line


def test_reserving_a_sparse_file_larger_than_the_disk_fails_before_any_write(disk):
    """A memory map over a sparse file dies of SIGBUS when the disk fills; reserving its blocks fails cleanly."""
    path = disk("64k") / "features.npy"
    with open(path, "wb") as fh:
        fh.truncate(1 << 20)  # 1 MiB of holes: creating it takes no space
    with pytest.raises(OSError) as info:
        features.reserve(path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)


def _tiny_backbone_and_data(color_images):
    from transferkit import create_backbone
    from transferkit.config import RunConfig
    from transferkit.training.plan import load_splits

    config = RunConfig(data=str(color_images), model="tiny-cnn", image_size=16, batch_size=4)
    return config, create_backbone("tiny-cnn"), load_splits(config)["train"]


def test_an_interrupted_extraction_leaves_no_temporary_file(tmp_path, color_images):
    from transferkit.loading import run_batches

    config, backbone, train = _tiny_backbone_and_data(color_images)

    def interrupted():
        yield next(iter(run_batches(config, backbone, train, train=False)))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        features.extract_features(backbone, interrupted(), tmp_path / "key.npy", len(train))
    assert list(tmp_path.iterdir()) == []


def test_the_next_run_removes_the_temporaries_of_killed_extractions(tmp_path, color_images):
    config, backbone, train = _tiny_backbone_and_data(color_images)
    dead, host = _dead_pid(), _host()
    stale = [tmp_path / f".abc.npy.{dead}@{host}.0123abcd.tmp.npy", tmp_path / f".abc.npy.{dead}.tmp.npy",
             tmp_path / f".abc.rank1-of-2.f32.{dead}@{host}.tmp"]
    kept = [tmp_path / f".abc.npy.{os.getpid()}@{host}.0123abcd.tmp.npy", tmp_path / "notes.txt"]
    for path in stale + kept:
        path.write_bytes(b"x")
    feats = features.frozen_features(config.replace(feature_cache=str(tmp_path)), backbone, train, "train")
    assert feats.shape == (len(train), backbone.num_features)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {p.name for p in kept} | {p.name for p in tmp_path.glob("*.npy") if not p.name.startswith(".")}


def test_feature_bars_only_when_progress_is_on_and_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    try:
        assert not features.progress_bar(total=1, file=Terminal()).disable
        assert features.progress_bar(total=1, file=io.StringIO()).disable  # a log file or pipe: no bar lines
        features.show_progress(False)
        assert features.progress_bar(total=1, file=Terminal()).disable
    finally:
        features.show_progress(True)


# ---- export -----------------------------------------------------------------------------------------------

def test_export_folder_gets_the_umask_and_the_next_export_removes_dead_staging(copy_run, fe_image_run):
    run = copy_run(fe_image_run)
    dead, host = _dead_pid(), _host()
    (run / f".export.{dead}@{host}.0123abcd.tmp").mkdir()
    (run / f".export.{dead}@{host}.0123abcd.tmp" / "model.onnx").write_bytes(b"half")
    previous = os.umask(0o022)
    try:
        exporting.export(run)
    finally:
        os.umask(previous)
    assert (run / "export").stat().st_mode & 0o777 == 0o755
    assert not [p.name for p in run.iterdir() if p.name.startswith(".export.")]


def test_an_export_killed_between_its_renames_is_put_back(tmp_path):
    dead, host = _dead_pid(), _host()
    old = tmp_path / f".export.{dead}@{host}.0123abcd.tmp.old"
    old.mkdir()
    (old / "model.onnx").write_bytes(b"the previous export")
    staging = exporting._staging_folder(tmp_path / "export")
    assert (tmp_path / "export" / "model.onnx").read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["export", staging.name])


def test_export_into_a_read_only_run_folder_is_one_line(cli, disk, fe_image_run):
    run = disk("8m", read_only=True, content=fe_image_run) / fe_image_run.name
    result = cli("export", run)
    line = _one_error_line(result)
    assert result.code == 2 and f"Cannot write {run / 'export'}" in line and "read-only" in line, line


# ---- the CLI's boundary -----------------------------------------------------------------------------------

def _failing(exc: BaseException):
    def command(args):
        raise exc
    return command


def _torch_save_on_a_full_disk(folder: Path) -> RuntimeError:
    """What torch.save raises when the disk fills: a RuntimeError whose context is the OSError."""
    try:
        with open(folder / "big.pt", "wb") as fh:
            torch.save({"w": torch.randn(100_000)}, fh)
    except RuntimeError as exc:
        return exc
    raise AssertionError("torch.save fitted on a 64 KiB disk")


def _safetensors_on_a_full_disk(folder: Path) -> Exception:
    from safetensors.torch import save_file

    try:
        save_file({"w": torch.randn(100_000)}, str(folder / "model.safetensors"))
    except Exception as exc:  # SafetensorError, no errno: "... (os error 28)"
        return exc
    raise AssertionError("safetensors fitted on a 64 KiB disk")


@pytest.mark.parametrize("make", [_torch_save_on_a_full_disk, _safetensors_on_a_full_disk])
def test_a_library_error_from_a_full_disk_is_one_line_exit_2(cli, disk, monkeypatch, make, tmp_path):
    exc = make(disk("64k"))
    monkeypatch.setitem(cli_module.COMMANDS, "fit", _failing(exc))
    result = cli("fit", "--out", tmp_path / "run")
    line = _one_error_line(result)
    assert result.code == 2 and line.startswith("transferkit: error: No space left on "), line
    assert "choose another --out" in line


@pytest.mark.parametrize(("exc", "code", "words"), [
    (OSError(errno.EROFS, "Read-only file system", "/data/run/x.json"), 2, ["/data/run/x.json", "read-only"]),
    (PermissionError(errno.EACCES, "Permission denied", "/data/images/a.png"), 2,
     ["Permission denied: /data/images/a.png", "make it accessible"]),
    (OSError(errno.ENOSPC, "No space left on device"), 2, ["No space left on ", "writing"]),
    (FileNotFoundError(errno.ENOENT, "No such file", "/x"), 1, ["internal error", "--debug"]),
    (ZeroDivisionError("division by zero"), 1, ["internal error: ZeroDivisionError", "--debug"])])
def test_the_boundary_makes_every_exception_one_line(cli, monkeypatch, tmp_path, exc, code, words):
    monkeypatch.setitem(cli_module.COMMANDS, "fit", _failing(exc))
    result = cli("fit", "--out", tmp_path / "run")
    line = _one_error_line(result)
    assert result.code == code, line
    for word in words:
        assert word in line, line


@pytest.mark.parametrize(("argv", "says"), [
    (["fit", "--data", "d", "--out", "runs/a b"], "continue with: transferkit fit --out 'runs/a b' --resume"),
    (["compare", "--data", "d", "--strategies", "full", "--out", "c"],
     "continue with: transferkit compare --data d --strategies full --out c (the same command resumes"),
    (["tune", "--data", "d", "--out", "t", "--debug"], "continue with: transferkit tune --data d --out t (the same"),
    (["export", "runs/a", "--opset", "18"], "run the export again: transferkit export runs/a --opset 18"),
    (["evaluate", "runs/a", "--data", "d"], "run it again: transferkit evaluate runs/a --data d"),
    (["predict", "runs/a", "x.png"], "run it again: transferkit predict runs/a x.png")])
def test_ctrl_c_names_the_command_that_continues(cli, monkeypatch, argv, says):
    monkeypatch.setitem(cli_module.COMMANDS, argv[0], _failing(KeyboardInterrupt()))
    monkeypatch.setattr(sys, "argv", ["transferkit", *argv])
    result = cli(*argv)
    assert result.code == 130
    assert _one_error_line(result).startswith(f"transferkit: interrupted; {says}"), result.err


def test_export_onto_a_full_disk_is_one_line_and_leaves_the_run_as_it_was(cli, disk, fe_image_run):
    run = disk("2m", content=fe_image_run) / fe_image_run.name
    free = os.statvfs(run).f_bavail * os.statvfs(run).f_frsize
    with open(run.parent / "filler", "wb") as filler:  # outside the run: leaves one page, less than the export
        os.posix_fallocate(filler.fileno(), 0, free - 4096)
    before = sorted(p.name for p in run.iterdir())
    result = cli("export", run)
    line = _one_error_line(result)
    assert result.code == 2 and "No space left on " in line and f"writing {run / 'export'};" in line, line
    assert sorted(p.name for p in run.iterdir()) == before, "a failed export left its staging folder"
