"""The hostile suite (issue 10): the real CLI in a subprocess, fed what a careless or hostile user feeds it.

Every case checks four things: the exit code (2 bad input or environment, 1 internal error, 130 Ctrl-C),
that the whole output is one line without a traceback, the key words of that line (what was wrong), and
that nothing was lost or left behind (folders as before, no temporary files, a corrected re-run works).

Every case passes. A defect found later gets `pytest.mark.xfail(strict=True, reason="<what happens now>")`
on its case until the fix lands (strict: the mark must go with the fix).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hostile_kit import SLOW_FIT, checkpoint_written, cli_env, fit_args, run_cli, wait_for
from launch import make_launcher
from synthetic_data import write_color_images


@pytest.fixture(scope="session")
def hostile_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile-cache")


@pytest.fixture(scope="session")
def launcher(hostile_cache):
    """Starts `python -m transferkit` processes (launch.py: forked from one importing server, or exec'd)."""
    launch = make_launcher(cli_env(hostile_cache))
    yield launch
    launch.close()


@pytest.fixture
def tk(launcher):
    """`tk(*argv, timeout=, umask=, memory_gb=, python_code=)`: run the CLI to its end; a Result.

    `python_code` runs `python -c CODE ARGV` instead (the same `main`, set up by the code). Every run has
    an 8 GiB address-space limit so that a hostile size cannot take the shared machine's memory.
    """
    return lambda *argv, **options: run_cli(launcher, *argv, **options)


@pytest.fixture
def spawn(launcher):
    """`spawn(*argv)`: start the CLI in the background; the test stops it (`stop`), teardown kills leftovers."""
    procs = []

    def start(*argv):
        proc = launcher.start(argv)
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
def finished_run(tmp_path_factory, images, launcher) -> Path:
    """A finished feature-extraction run of tiny-cnn (read-only for tests: copy before changing)."""
    out = tmp_path_factory.mktemp("hostile-runs") / "fe"
    result = run_cli(launcher, *fit_args(images, out))
    assert result.code == 0, result.text[-3000:]
    return out


@pytest.fixture(scope="session")
def unfinished_run(tmp_path_factory, images, launcher) -> Path:
    """A fine-tuning run killed (SIGKILL) after its first checkpoints: resumable, not finished.

    Read-only for tests: copy before changing (`copy_unfinished`).
    """
    out = tmp_path_factory.mktemp("hostile-runs") / "unfinished"
    proc = launcher.start(["fit", "--data", images, *SLOW_FIT, "--out", out])
    try:
        wait_for(lambda: checkpoint_written(out), proc, what="the slow fit's first checkpoint")
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert not (out / "metrics.json").exists(), "the slow fit finished before it could be killed"
    return out


@pytest.fixture
def copy_unfinished(unfinished_run, tmp_path):
    """`copy_unfinished(name)`: a private copy of the unfinished run (shutil.copytree keeps its content)."""
    def copy(name: str = "run") -> Path:
        return Path(shutil.copytree(unfinished_run, tmp_path / name))

    return copy
