"""`hold_lock`: one process per output folder; a dead holder's lock is taken over; the file goes on exit."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from transferkit.errors import RunFolderError
from transferkit.locks import LOCK_FILE, hold_lock, lock_holder

HOLDER = textwrap.dedent("""
    import sys
    from transferkit.locks import hold_lock

    with hold_lock(sys.argv[1], "tune"):
        print("held", flush=True)
        sys.stdin.readline()  # hold until the test says so (or kills us)
""")


@pytest.fixture
def holder(tmp_path):
    """A real second process holding tmp_path/out; yields (process, folder)."""
    folder = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout.readline().strip() == "held"
        yield process, folder
    finally:
        process.kill()
        process.wait()


def test_a_live_holder_refuses_a_second_process_then_its_stale_lock_is_taken_over(holder, caplog):
    process, folder = holder
    note = lock_holder(folder)
    assert note["pid"] == process.pid and note["what"] == "tune"
    with pytest.raises(RunFolderError) as refused:
        with hold_lock(folder, "fit"):
            pytest.fail("entered a folder another live process holds")
    message = str(refused.value)
    assert message.startswith(f"{folder} is in use by PID {process.pid} (tune, started ")
    assert message.endswith("wait for it or use another --out.") and "\n" not in message
    assert lock_holder(folder)["pid"] == process.pid  # the refused attempt left the holder's note alone

    process.send_signal(signal.SIGKILL)  # dies without cleaning up: the lock file stays behind
    process.wait()
    assert (folder / LOCK_FILE).is_file() and lock_holder(folder)["pid"] == process.pid
    with caplog.at_level(logging.WARNING, logger="transferkit"), hold_lock(folder, "fit") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"stale lock of {folder} (PID {process.pid}" in caplog.text
    assert not (folder / LOCK_FILE).exists()


def test_a_holder_that_finishes_frees_the_folder(holder):
    process, folder = holder
    process.communicate("\n")  # the holder leaves its block and exits normally
    assert process.returncode == 0 and not (folder / LOCK_FILE).exists()
    with hold_lock(folder, "fit"):
        assert lock_holder(folder)["pid"] == os.getpid()


def test_the_lock_is_removed_on_an_exception_and_is_reentrant(tmp_path):
    folder = tmp_path / "new" / "folder"  # created on demand
    with pytest.raises(ValueError), hold_lock(folder, "compare"):
        with hold_lock(folder, "fit"):  # a nested hold of the same folder by the same process passes through
            assert lock_holder(folder)["what"] == "compare"
        assert (folder / LOCK_FILE).is_file()  # the inner block's end does not free the outer one's folder
        raise ValueError("boom")
    assert not (folder / LOCK_FILE).exists()
    with hold_lock(folder, "fit"):  # and the folder can be taken again
        pass
