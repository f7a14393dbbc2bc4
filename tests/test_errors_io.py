"""Writes the OS refuses become one-line errors naming the file; atomic writes leave nothing half-made behind.

A full disk is a real 64 KiB tmpfs and a read-only target a tmpfs mounted read-only: both need root
(mount(2)); elsewhere those tests skip and say so. The errno mapping itself is tested on any machine.
"""

from __future__ import annotations

import errno
import os

import pytest

from transferkit.config import atomic_write_text
from transferkit.errors import (DiskSpaceError, LockedError, NotWritableError, TrainingDivergedError,
                                TransferkitError, WriteError, device_of, io_error, writing)


@pytest.fixture
def small_disk(disk):
    """A 64 KiB tmpfs: writing more than that fails with ENOSPC."""
    return disk("64k")


@pytest.fixture
def read_only_disk(disk):
    """A tmpfs mounted read-only (as root, chmod does not stop a write; a read-only mount does)."""
    return disk("64k", read_only=True)


def test_full_disk_is_one_line_naming_device_and_path_and_keeps_the_old_file(small_disk):
    target = small_disk / "run" / "metrics.json"
    atomic_write_text(target, "old")
    with pytest.raises(DiskSpaceError) as info:
        atomic_write_text(target, "x" * 200_000)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"No space left on {small_disk} (tmpfs, ") and f"writing {target};" in message
    assert message.endswith("free space or choose another --out.")
    assert isinstance(info.value, WriteError) and info.value.exit_code == 2
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert target.read_text() == "old"  # the previous content survives a failed write
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]  # no temporary file left


def test_read_only_target_is_one_line(read_only_disk):
    target = read_only_disk / "config.yaml"
    with pytest.raises(NotWritableError) as info:
        atomic_write_text(target, "data: x\n")
    assert str(info.value) == (f"Cannot write {target}: {device_of(target)} is mounted read-only; "
                               "choose another --out.")
    assert "tmpfs" in str(info.value) and not list(read_only_disk.iterdir())


def test_a_raw_write_inside_writing_names_the_file_and_the_fix(small_disk):
    target = small_disk / "features.npy"
    with pytest.raises(DiskSpaceError, match=r"features\.npy; free space or point --feature-cache elsewhere\.$"):
        with writing(target, fix="point --feature-cache elsewhere"), open(target, "wb") as fh:
            fh.write(b"\0" * 200_000)


@pytest.mark.parametrize(("code", "kind", "words"), [
    (errno.ENOSPC, DiskSpaceError, "No space left on"),
    (errno.EDQUOT, DiskSpaceError, "Disk quota exceeded on"),
    (errno.EROFS, NotWritableError, "is mounted read-only"),
    (errno.EACCES, NotWritableError, "Permission denied writing"),
    (errno.EPERM, NotWritableError, "Operation not permitted writing"),
])
def test_each_refusal_errno_maps_to_its_error(tmp_path, code, kind, words):
    path = tmp_path / "not-yet" / "best.ckpt"
    converted = io_error(OSError(code, os.strerror(code)), path)
    assert type(converted) is kind and words in str(converted) and str(path) in str(converted)
    assert isinstance(converted, TransferkitError) and "\n" not in str(converted)


def test_the_path_defaults_to_the_file_the_os_error_names(tmp_path):
    converted = io_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "best.ckpt")))
    assert isinstance(converted, DiskSpaceError) and f"writing {tmp_path / 'best.ckpt'};" in str(converted)
    nameless = OSError(errno.ENOSPC, "No space left on device")
    assert io_error(nameless) is nameless  # nothing to name: left as it was


def test_other_os_errors_pass_through_unchanged(tmp_path):
    missing = OSError(errno.ENOENT, "No such file or directory")
    assert io_error(missing, tmp_path / "x") is missing
    with pytest.raises(FileNotFoundError):
        with writing(tmp_path / "x"):
            open(tmp_path / "no-such-folder" / "x", "w")


def test_device_of_a_path_not_yet_created_names_its_file_system(tmp_path):
    description = device_of(tmp_path / "a" / "b" / "c.json")
    mount = description.split(" (")[0]
    assert os.path.ismount(mount) and str(tmp_path).startswith(mount) and " size " in description


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_gives_the_file_the_users_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "sub" / "config.yaml", "a: 1\n")
    finally:
        os.umask(previous)
    assert (tmp_path / "sub" / "config.yaml").stat().st_mode & 0o777 == mode
    assert (tmp_path / "sub" / "config.yaml").read_text() == "a: 1\n"


def test_atomic_write_replaces_and_leaves_no_temporary_files(tmp_path):
    for text in ("first", "second"):
        atomic_write_text(tmp_path / "history.csv", text)
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]
    assert (tmp_path / "history.csv").read_text() == "second"


def test_lock_and_divergence_messages_name_what_and_how_to_fix(tmp_path):
    locked = str(LockedError.held(tmp_path / "run", 4242))
    assert f"{tmp_path / 'run'} is in use by another transferkit process (PID 4242)" in locked
    assert "study" in str(LockedError.held(tmp_path / "tune", 7, what="study"))
    diverged = str(TrainingDivergedError.at(epoch=2, step=17, loss=float("nan"), lr=0.5))
    assert diverged == ("Training diverged: the loss became nan at epoch 3, step 17; lower the learning rate "
                        "with --lr (now 0.5), e.g. ten times lower.")
