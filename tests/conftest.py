"""Shared fixtures of the CLI, run-folder and backbone tests: synthetic data and small fitted runs.

Runs are fitted once per session through the CLI with the tiny backbones, so the whole set stays
fast on a CPU; tests that change a run work on a copy (`copy_run`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from synthetic_data import write_color_images, write_reviews


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture(scope="session", autouse=True)
def _quiet_isolated_session(tmp_path_factory):
    """A private feature cache for the session, and Lightning's banners out of the output."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERKIT_CACHE", str(tmp_path_factory.mktemp("feature-cache")))
        yield


@pytest.fixture
def cli(capsys):
    """`cli(*argv)`: run `transferkit.cli.main` in-process and return its exit code, stdout and stderr."""
    from transferkit.cli import main

    def run(*argv) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture
def terminal(capsys, monkeypatch):
    """Captured stdout and stderr (capsys) that say they are terminals, where progress bars are drawn.

    Patched on the capture class: pytest may swap the captured stream objects between setup and the test.
    """
    from _pytest.capture import CaptureIO

    monkeypatch.setattr(CaptureIO, "isatty", lambda self: True)


@pytest.fixture
def cli_error(cli):
    """`cli_error(*argv)`: run the CLI, check it failed the user-facing way, return the message line."""

    def run(*argv) -> str:
        result = cli(*argv)
        assert result.code == 2, result
        lines = result.err.strip().splitlines()
        assert len(lines) == 1, result.err
        assert lines[0].startswith("transferkit: error: "), result.err
        assert "Traceback" not in result.err + result.out
        return lines[0]

    return run


@pytest.fixture(scope="session")
def color_images(tmp_path_factory) -> Path:
    return write_color_images(tmp_path_factory.mktemp("data") / "colors")


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory) -> Path:
    return write_reviews(tmp_path_factory.mktemp("data") / "reviews.csv")


def _fit_via_cli(out: Path, *argv) -> Path:
    from transferkit.cli import main

    code = main(["fit", *map(str, argv), "--out", str(out)])
    assert code == 0, f"fit {argv} exited with {code}"
    return out


@pytest.fixture(scope="session")
def fe_image_run(tmp_path_factory, color_images) -> Path:
    """Feature extraction (logistic head) on tiny-cnn."""
    return _fit_via_cli(tmp_path_factory.mktemp("runs") / "fe-image", "--data", color_images,
                        "--model", "tiny-cnn", "--image-size", 16)


@pytest.fixture(scope="session")
def full_image_run(tmp_path_factory, color_images) -> Path:
    """Full fine-tuning of tiny-cnn through Lightning (checkpoints, history)."""
    return _fit_via_cli(tmp_path_factory.mktemp("runs") / "full-image", "--data", color_images,
                        "--model", "tiny-cnn", "--strategy", "full", "--epochs", 2, "--image-size", 16)


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, reviews_csv) -> Path:
    """Feature extraction on tiny-text (a 2-layer BERT with MiniLM's tokenizer)."""
    return _fit_via_cli(tmp_path_factory.mktemp("runs") / "fe-text", "--data", reviews_csv, "--model", "tiny-text")


@pytest.fixture
def copy_run(tmp_path):
    """`copy_run(run)`: a private copy of a session run folder, safe to change."""

    def copy(run: Path) -> Path:
        return Path(shutil.copytree(run, tmp_path / f"copy-of-{run.name}"))

    return copy


@pytest.fixture
def disk(tmp_path):
    """`disk(size, read_only=False, content=None)`: a folder on its own tmpfs, for full and read-only disks.

    A real file system refuses the writes (as root, chmod does not). `content` is copied onto the tmpfs
    before it is made read-only. Mounting needs root (CI runs as root); elsewhere the test skips saying so.
    """
    mounts = []

    def make(size: str, read_only: bool = False, content: Path | None = None) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a full or read-only disk needs a tmpfs, which only root can mount")
        target = tmp_path / f"disk{len(mounts)}"
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {done.stderr.strip()}")
        mounts.append(target)
        if content is not None:
            shutil.copytree(content, target / content.name)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
        return target

    yield make
    for target in mounts:
        subprocess.run(["umount", "-l", str(target)], check=False)
