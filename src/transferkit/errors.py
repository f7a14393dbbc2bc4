"""Errors a user can act on. The CLI prints them in one line and exits with code 2.

Each message names what was wrong (the file, the option, the value) and how to fix it. `writing(path)`
turns the operating system's refusals to write (full disk, quota, read-only or forbidden folder) into
such errors.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path


class TransferkitError(Exception):
    """Base class for every error caused by user input or environment, not by a bug."""

    exit_code = 2


class ConfigError(TransferkitError):
    """An option or combination of options that cannot work."""


class DataError(TransferkitError):
    """Missing, empty, corrupt or malformed data."""


class UnknownNameError(TransferkitError):
    """A name looked up in a registry that holds no such entry."""


class WeightsNotFoundError(TransferkitError):
    """Pretrained weights that were asked for but cannot be found."""


class RunFolderError(TransferkitError):
    """A folder that is not (or not a finished) transferkit run."""


class ExportError(TransferkitError):
    """An exported model that does not reproduce the PyTorch model within the tolerance."""


class WeightsFileError(TransferkitError):
    """A weights file (safetensors, torch checkpoint) that is truncated, damaged or of another model."""


class LockedError(TransferkitError):
    """A run folder, comparison or study that another live process is writing.

    Build the message with `LockedError.held(path, pid)` so that every lock reads the same.
    """

    @classmethod
    def held(cls, path: str | Path, pid: int, what: str = "run folder") -> LockedError:
        return cls(f"The {what} {path} is in use by another transferkit process (PID {pid}); wait for it to "
                   f"end or stop it (a lock left by a process that died is taken over).")


class TrainingDivergedError(TransferkitError):
    """A non-finite training loss: the run stops at once and saves no model."""

    @classmethod
    def at(cls, *, epoch: int, step: int, loss: float, lr: float | None = None) -> TrainingDivergedError:
        """The error for a loss of `loss` at 0-based `epoch` (shown 1-based) and global `step`."""
        now = f" (now {lr:g})" if lr else ""
        return cls(f"Training diverged: the loss became {loss} at epoch {epoch + 1}, step {step}; "
                   f"lower the learning rate with --lr{now}, e.g. ten times lower.")


class WriteError(TransferkitError):
    """A file that could not be written; see `writing`."""


class DiskSpaceError(WriteError):
    """No space (or no quota) left on the device a file is written to."""


class NotWritableError(WriteError):
    """A read-only file system or a folder the user may not write to."""


#: errno -> (error class, message template); `fix` is what the user can do, e.g. "choose another --out".
_WRITE_ERRORS = {
    errno.ENOSPC: (DiskSpaceError, "No space left on {device} writing {path}; free space or {fix}."),
    errno.EDQUOT: (DiskSpaceError, "Disk quota exceeded on {device} writing {path}; free space or {fix}."),
    errno.EROFS: (NotWritableError, "Cannot write {path}: {device} is mounted read-only; {fix}."),
    errno.EACCES: (NotWritableError, "Permission denied writing {path}; {fix} or make it writable."),
    errno.EPERM: (NotWritableError, "Operation not permitted writing {path}; {fix} or make it writable."),
}


#: The errno values of a write the OS refused: the disk or the folder is at fault, not transferkit.
WRITE_ERRNOS = frozenset(_WRITE_ERRORS)


def io_error(exc: OSError, path: str | Path | None = None, fix: str = "choose another --out") -> Exception:
    """The TransferkitError for an OSError raised while writing `path`, or `exc` itself when none fits.

    Args:
        exc: the error the write raised.
        path: the file (or folder) being written; default: the file the OSError names.
        fix: what the user can do instead, completing "free space or ...".
    """
    path = path or exc.filename
    if exc.errno not in _WRITE_ERRORS or path is None:
        return exc
    kind, template = _WRITE_ERRORS[exc.errno]
    return kind(template.format(path=path, device=device_of(Path(path)), fix=fix))


@contextlib.contextmanager
def writing(path: str | Path, fix: str = "choose another --out") -> Iterator[None]:
    """Raise DiskSpaceError / NotWritableError, in one line naming `path`, for a write that the OS refuses.

    Also when a library reports the refusal in its own type (torch.save, safetensors: see `os_error_in`).

    Example:
        with writing(out / "features.npy", fix="point --feature-cache elsewhere"):
            np.save(out / "features.npy", feats)
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001  (a library's own error may wrap the OSError: see os_error_in)
        cause = None if isinstance(exc, TransferkitError) else os_error_in(exc)  # an inner `writing` said it
        converted = io_error(cause, path, fix) if cause is not None else cause
        if converted is None or converted is cause:
            raise
        raise converted from exc


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind `exc`: itself, or the first in its chain of causes and contexts; None without one.

    Libraries report a failed write in their own types: torch.save raises RuntimeError("unexpected
    pos ...") with the file's OSError as its context, safetensors a SafetensorError whose message
    ends "(os error 28)".
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        code = re.search(r"\(os error (\d+)\)", str(exc))
        if code:
            return OSError(int(code.group(1)), os.strerror(int(code.group(1))))
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def device_of(path: Path) -> str:
    """'<mount point> (<device>, size <total>)' of the file system holding `path` (its nearest existing folder).

    The size, not the free space: by the time a failed write is reported its partial file is gone.
    """
    existing = Path(os.path.abspath(path))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    mount = existing
    with contextlib.suppress(OSError):
        while mount != mount.parent and not os.path.ismount(mount):
            mount = mount.parent
        total = shutil.disk_usage(mount).total
        source = _mount_sources().get(str(mount))
        return f"{mount} ({source + ', ' if source else ''}size {human_size(total)})"
    return str(mount)


def _mount_sources() -> dict[str, str]:
    """{mount point: device} from /proc/self/mounts (Linux); empty elsewhere."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return {}
    fields = [line.split() for line in lines]
    return {_unescape(parts[1]): _unescape(parts[0]) for parts in fields if len(parts) > 2}


def _unescape(text: str) -> str:
    r"""A /proc/self/mounts field with the kernel's octal escapes (\040 for a space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def human_size(n: float) -> str:
    """E.g. "512 B", "48.0 KiB", "1.5 GiB"."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"


def suggest(name: str, choices: Iterable[str], cutoff: float = 0.5) -> str:
    """Return ' Did you mean X?' for the closest matches of `name` (difflib ratio >= `cutoff`), or ''."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=cutoff)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
