"""Files every part writes or reads: YAML option files and atomic text writes with the user's umask.

Temporary files and folders are named `.<name>.<pid>@<host>[.<hex>].tmp` (see `temporary_name`), so that
the next run can tell those of a process that died (`remove_stale_temporaries`) from those of a live one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any

import yaml

from transferkit.errors import RunFolderError, writing


def read_saved_yaml(path: str | Path) -> dict[str, Any]:
    """A mapping transferkit itself wrote as YAML (a run's config.yaml), read without checking it as options."""
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"Cannot read {path} ({str(exc).splitlines()[0]}); re-run fit to rebuild it.") from None
    if not isinstance(values, dict):
        raise RunFolderError(f"{path} is damaged (not a mapping of option: value); re-run fit to rebuild it.")
    return values


def save_yaml(values: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(values, sort_keys=False))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file.

    The file gets the permissions of any file the user creates (0666 less the umask). A full disk or
    a read-only folder raises a one-line DiskSpaceError or NotWritableError naming `path`; the
    temporary file is removed and a previous `path` is left as it was.
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = create_temporary(path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())  # a full disk may only show here (delayed allocation, NFS)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def create_temporary(path: Path) -> tuple[Path, int]:
    """(name, open write descriptor) of a new temporary file beside `path`, mode 0666 less the umask."""
    # Not tempfile.mkstemp: it creates 0600 files, and the rename would keep that mode.
    while True:
        tmp = temporary_name(path)
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def follow_umask(path: str | Path) -> None:
    """Give `path` the permissions of a file the user creates (0666 less the umask).

    For files that a library creates with its own mode (safetensors writes 0600).
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def temporary_name(path: Path, suffix: str = ".tmp") -> Path:
    """A fresh temporary name beside `path` that names this process: `.<name>.<pid>@<host>.<hex><suffix>`."""
    return path.with_name(f".{path.name}.{process_tag()}.{secrets.token_hex(4)}{suffix}")


def process_tag() -> str:
    """`<pid>@<host>`: which process (of which machine) a temporary file belongs to."""
    return f"{os.getpid()}@{_host()}"


#: A temporary name of `temporary_name` (or of older releases, `.<name>.<pid>.tmp.npy`): its pid and host.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)(?:@(?P<host>[^./@]*))?(?:\.[0-9a-f]+)?\.tmp(?:\.\w+)?$")


def remove_stale_temporaries(folder: Path, pattern: str = ".*") -> list[Path]:
    """Remove the temporary files and folders (matching `pattern`) in `folder` that `is_stale` finds.

    Returns what was removed.
    """
    removed = []
    for path in sorted(Path(folder).glob(pattern)) if Path(folder).is_dir() else ():
        if not is_stale(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # a read-only folder: what is left there stays, unused
                path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def is_stale(path: Path) -> bool:
    """Whether `path` is a temporary name of a process of this machine that is gone.

    Those of live processes, and of other machines sharing the folder, are not stale.
    """
    match = _TEMPORARY.match(path.name)
    return bool(match) and match["host"] in (None, _host()) and not pid_alive(int(match["pid"]))


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this machine (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host() -> str:
    """This machine's name, without the dots, at signs and slashes that would make temporary names ambiguous."""
    return re.sub(r"[./@]", "_", socket.gethostname())
