"""The hostile suite (issue 10): the real CLI in a subprocess, fed what a careless or hostile user feeds it.

Every case checks four things: the exit code (2 bad input or environment, 1 internal error, 130 Ctrl-C),
that the whole output is one line without a traceback, the key words of that line (what was wrong), and
that nothing was lost or left behind (folders as before, no temporary files, a corrected re-run works).

Cases that fail today carry `xfail(strict=True, reason="issue 10 <family>: <what happens now>")`;
each mark must go when its fix lands.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_kit import (SLOW_FIT, TIMEOUT, Result, checkpoint_written, cli_env, command, fit_args,
                         wait_for)
from synthetic_data import write_color_images, write_reviews


@pytest.fixture(scope="session")
def hostile_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile-cache")


@pytest.fixture
def tk(hostile_cache):
    """`tk(*argv, timeout=, umask=, memory_gb=, python_code=)`: run `python -m transferkit ARGV`; a Result.

    `python_code` runs `python -c CODE ARGV` instead (the same `main`, set up by the code).

    A run past its timeout is killed and reported as a failed assertion (a hang is a defect).
    """

    def run(*argv, timeout: float = TIMEOUT, umask: int | None = None, memory_gb: float = 8,
            python_code: str | None = None) -> Result:
        def preexec():
            # A hostile size must not take the shared machine's memory: past this, allocation fails.
            limit = int(memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            if umask is not None:
                os.umask(umask)

        argv_full = [sys.executable, "-c", python_code, *map(str, argv)] if python_code else command(*argv)
        try:
            proc = subprocess.run(argv_full, capture_output=True, text=True, timeout=timeout,
                                  env=cli_env(hostile_cache), preexec_fn=preexec)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"transferkit {' '.join(map(str, argv))} hung for more than {timeout} s") from exc
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def spawn(hostile_cache):
    """`spawn(*argv)`: start `python -m transferkit ARGV` in the background; the test stops it (see `stop`)."""
    procs: list[subprocess.Popen] = []

    def start(*argv) -> subprocess.Popen:
        proc = subprocess.Popen(command(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=cli_env(hostile_cache))
        procs.append(proc)
        return proc

    yield start
    for proc in procs:  # never leave a child behind, whatever the test did
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> Path:
    """3 colour classes x 12 images of 16 px (read-only for tests: copy before changing)."""
    return write_color_images(tmp_path_factory.mktemp("hostile-data") / "colors", per_class=12)


@pytest.fixture(scope="session")
def reviews(tmp_path_factory) -> Path:
    return write_reviews(tmp_path_factory.mktemp("hostile-data") / "reviews.csv", per_class=12)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, images, hostile_cache) -> Path:
    """A finished feature-extraction run of tiny-cnn (read-only for tests: copy before changing)."""
    out = tmp_path_factory.mktemp("hostile-runs") / "fe"
    proc = subprocess.run(command(*fit_args(images, out)), capture_output=True, text=True, timeout=TIMEOUT,
                          env=cli_env(hostile_cache))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def unfinished_run(tmp_path_factory, images, hostile_cache) -> Path:
    """A fine-tuning run killed (SIGKILL) after its first checkpoints: resumable, not finished.

    Read-only for tests: copy before changing (`copy_unfinished`).
    """
    out = tmp_path_factory.mktemp("hostile-runs") / "unfinished"
    proc = subprocess.Popen(command("fit", "--data", images, *SLOW_FIT, "--out", out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=cli_env(hostile_cache))
    try:
        wait_for(lambda: checkpoint_written(out), proc, what="the slow fit's first checkpoint")
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert not (out / "metrics.json").exists(), "the slow fit finished before it could be killed"
    return out


@pytest.fixture
def copy_unfinished(unfinished_run, tmp_path):
    """`copy_unfinished(name)`: a private copy of the unfinished run (shutil.copytree keeps its content)."""
    import shutil

    def copy(name: str = "run") -> Path:
        return Path(shutil.copytree(unfinished_run, tmp_path / name))

    return copy
