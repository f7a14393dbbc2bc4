"""One process at a time per output folder: `hold_lock(folder, what)`.

    from transferkit.locks import hold_lock

    with hold_lock(out, "tune"):
        ...  # no other process writes into `out` until the block ends

The lock is `folder/.lock`, a small JSON file naming the holder (PID, host, what, start time), held
with an operating-system lock (`fcntl.flock`). The kernel releases that lock when the holder dies,
however it dies, so a lock left behind by a killed process is stale by construction and the next
process takes it over; a second live process is refused with one line naming the holder. Unlike
a PID check, this cannot mistake a recycled PID for the holder. The lock is re-entrant within a
process (a nested `hold_lock` of the same folder passes through) and the file is removed when the
outermost block ends, also on an exception. POSIX only (Linux, macOS).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from transferkit.errors import RunFolderError

LOCK_FILE = ".lock"

log = logging.getLogger("transferkit")
_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth


@contextmanager
def hold_lock(folder: str | Path, what: str) -> Iterator[Path]:
    """Hold `folder/.lock` for the duration of the block; the folder is created if missing.

    Args:
        folder: the output folder to own (a run, comparison or tune folder).
        what: what the holder does there, shown to a process that is refused (e.g. "tune").

    Yields:
        The lock file's path.

    Raises:
        RunFolderError: another live process holds the folder; the message names its PID and
            start time and says to wait for it or use another --out.
    """
    path = (Path(folder) / LOCK_FILE).resolve()
    if path in _held:  # re-entrant: the outer block already owns the folder
        _held[path] += 1
        try:
            yield path
        finally:
            _held[path] -= 1
        return
    fd = _acquire(path, what)
    _held[path] = 1
    try:
        yield path
    finally:
        del _held[path]
        _release(path, fd)


def check_unlocked(folder: str | Path) -> None:
    """Refuse (RunFolderError naming the holder) a folder another live process holds; changes nothing.

    For the checks a command makes before it takes the lock itself: a stale lock passes, and nothing
    is created or removed. This process's own locks pass too.
    """
    path = (Path(folder) / LOCK_FILE).resolve()
    if path in _held:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file (or no folder): nobody holds it
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released by the close below
    except BlockingIOError:
        raise RunFolderError(_in_use_message(path)) from None
    finally:
        os.close(fd)


def lock_holder(folder: str | Path) -> dict | None:
    """What `folder/.lock` says about its holder (pid, host, what, started), or None without a readable lock."""
    try:
        return json.loads((Path(folder) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _acquire(path: Path, what: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # no O_TRUNC: a refused process must not wipe the holder's note
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderError(_in_use_message(path)) from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the previous holder removed the file between our open and flock: lock the new one
    previous = lock_holder(path.parent)
    if previous:
        log.warning("Taking over the stale lock of %s (PID %s on %s, started %s, no longer running).",
                    path.parent, previous.get("pid"), previous.get("host"), previous.get("started"))
    note = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(note) + "\n").encode("utf-8"))
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _release(path: Path, fd: int) -> None:
    # Unlink while still holding the flock, so a waiting process never locks a file about to vanish.
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _in_use_message(path: Path) -> str:
    holder = lock_holder(path.parent) or {}
    who = f"PID {holder.get('pid', '?')}"
    if holder.get("host") and holder.get("host") != socket.gethostname():
        who += f" on {holder['host']}"
    doing = f"{holder['what']}, " if holder.get("what") else ""
    return (f"{path.parent} is in use by {who} ({doing}started {holder.get('started', 'at an unknown time')}); "
            "wait for it or use another --out.")
