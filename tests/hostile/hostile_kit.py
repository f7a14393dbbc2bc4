"""Helpers of the hostile suite: run the CLI, assert one line, snapshot folders (see conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
import zlib
from pathlib import Path

#: Bounds for every subprocess: no hostile case may hang the suite.
TIMEOUT = 120
#: Temporary names transferkit, Lightning or the OS may leave behind when interrupted.
TEMP_NAME = re.compile(r"(\.tmp|\.tmp\.npy|\.partial|\.lock~)$|^\.export\.|\.tmp\.|^tmp[a-z0-9_]{6,}$|\.rank\d+-of-")


@dataclass
class Result:
    """One CLI run: exit code and the two streams (`text`: both, stderr last)."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return (self.out + self.err).strip()

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]


def cli_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", TRANSFERKIT_CACHE=str(cache), PYTHONWARNINGS="ignore")
    return env


def run_cli(launcher, *argv, timeout: float = TIMEOUT, **options) -> Result:
    """Run the CLI to its end (see launch.py); a run past `timeout` is killed and fails the test (a hang)."""
    proc = launcher.start(argv, **options)
    try:  # an exec'd CLI first imports torch and Lightning: tens of seconds on a loaded machine
        out, err = proc.communicate(timeout=timeout + launcher.import_allowance)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        raise AssertionError(f"transferkit {' '.join(map(str, argv))} hung for more than {timeout} s") from None
    return Result(proc.returncode, out, err)


def stop(proc, sig: int = signal.SIGINT, timeout: float = 60) -> Result:
    """Send `sig` to a spawned CLI and collect its Result (SIGKILL after `timeout` if it ignores it)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"transferkit ignored signal {sig} for {timeout} s:\n{err[-2000:]}") from None
    return Result(proc.returncode, out, err)


def wait_for(condition, proc=None, timeout: float = 240, what: str = "") -> None:
    """Poll `condition()` every 20 ms until true; fail if it never is or `proc` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the CLI ended (exit {proc.returncode}) before {what}:\n{(out + err)[-3000:]}")
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def assert_one_line(result: Result, code: int, *words: str) -> str:
    """The user-facing failure: exit `code`, one line, no traceback, naming each of `words` (case-insensitive)."""
    assert result.code == code, f"exit {result.code}, expected {code}:\n{result.text[-3000:]}"
    assert "Traceback" not in result.text, result.text[-3000:]
    assert len(result.lines) == 1, f"{len(result.lines)} lines:\n{result.text[-3000:]}"
    line = result.lines[0]
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in: {line}"
    return line


def assert_ok(result: Result) -> None:
    assert result.code == 0, f"exit {result.code}:\n{result.text[-3000:]}"
    assert "Traceback" not in result.text, result.text[-3000:]


def tree_state(root: Path) -> dict[str, str]:
    """Relative path -> content hash (or 'dir') of everything under `root`: equal states, nothing changed."""
    state = {}
    if not root.exists():
        return state
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        state[rel] = "dir" if path.is_dir() else hashlib.sha1(path.read_bytes()).hexdigest()
    return state


def stray_temp_files(*roots: Path) -> list[str]:
    """Temporary files or folders left under `roots` (interrupted writes)."""
    found = []
    for root in roots:
        if root.exists():
            found += [str(p) for p in root.rglob("*") if TEMP_NAME.search(p.name)]
    return found


def classes_of(run: Path) -> list[str]:
    return json.loads((run / "model" / "transferkit.json").read_text(encoding="utf-8"))["classes"]


# ---- data and runs ----------------------------------------------------------------------------------------

def fit_args(data: Path, out: Path, *extra) -> list:
    """The cheapest fit there is: feature extraction (logistic head) on a tiny backbone."""
    model = "tiny-text" if data.suffix in (".csv", ".jsonl", ".parquet") and "image" not in data.stem else "tiny-cnn"
    return ["fit", "--data", data, "--model", model, "--out", out, *extra]


#: A fine-tuning fit long enough to be interrupted between checkpoints.
SLOW_FIT = ("--model", "tiny-cnn", "--strategy", "full", "--epochs", "40", "--patience", "0", "--batch-size", "4",
            "--no-probe-init")


def checkpoint_written(out: Path) -> bool:
    """last.ckpt and best.ckpt exist and last.ckpt has not changed for 0.3 s (not mid-write)."""
    last, best = out / "checkpoints" / "last.ckpt", out / "checkpoints" / "best.ckpt"
    if not (last.is_file() and best.is_file()):
        return False
    size = last.stat().st_size
    time.sleep(0.3)
    return size > 0 and last.is_file() and last.stat().st_size == size


# ---- bad image files -------------------------------------------------------------------------------------

def image_table(tmp_path, images, bad_name: str, make_bad) -> tuple:
    """A copy of the images with one extra row in an image table pointing at a bad file."""
    import pandas as pd

    root = shutil.copytree(images, tmp_path / "imgs")
    rows = [{"image": str(p.relative_to(root)), "label": p.parent.name} for p in sorted(root.rglob("*.png"))]
    make_bad(root / "red" / bad_name, root / "red" / "0.png")
    rows.append({"image": f"red/{bad_name}", "label": "red"})
    table = root / "images.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table, root / "red" / bad_name


def fifo(path, _good):
    os.mkfifo(path)


def truncated_png(path, good):
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def undecodable_png(path, good):
    """A PNG whose chunks and CRCs are valid but whose pixel data is not zlib: the header check passes."""
    data = good.read_bytes()
    out, pos = bytearray(data[:8]), 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IDAT":
            body = bytes(range(256))[:length].ljust(length, b"\xff")
        out += struct.pack(">I4s", length, kind) + body + struct.pack(">I", zlib.crc32(kind + body))
        pos += 12 + length
    path.write_bytes(bytes(out))
