"""Files every part writes or reads: YAML option files and atomic text writes with the user's umask."""

from __future__ import annotations

import os
import secrets
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
        tmp, fd = _create_temporary(path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())  # a full disk may only show here (delayed allocation, NFS)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _create_temporary(path: Path) -> tuple[Path, int]:
    # Not tempfile.mkstemp: it creates 0600 files, and the rename would keep that mode.
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
