"""Checkpoints written whole or not at all: a Lightning CheckpointIO over a temporary file and a rename.

Lightning's `TorchCheckpointIO` serialises into memory and writes through fsspec, whose temporary
files are created 0600 (mkstemp) and, on a full disk, leave a truncated or stray file behind. Here
the checkpoint streams into a temporary file in the checkpoint's own folder, is flushed to disk and
then renamed over the old one: a reader (or a resume) sees the previous checkpoint or the new one,
never half a file. A write the OS refuses (full disk, quota, read-only folder) removes the temporary
file and raises a one-line DiskSpaceError or NotWritableError naming the checkpoint; the temporary
file of a process killed mid-write is removed by the next save into the same folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from transferkit.errors import writing
from transferkit.files import create_temporary, remove_stale_temporaries


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose saves are atomic (temporary file, fsync, rename) and keep the user's umask.

    Loading and removing are Lightning's. Plug it into a Trainer with `plugins=[AtomicCheckpointIO()]`.
    """

    def __init__(self):
        super().__init__()
        self._swept: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options.")
        path = Path(path)
        if path.parent not in self._swept:  # a process killed while saving left its temporary file
            remove_stale_temporaries(path.parent)
            self._swept.add(path.parent)
        save_atomically(checkpoint, path)


def save_atomically(obj: Any, path: Path, fix: str = "choose another --out") -> None:
    """`torch.save(obj)` to `path` through a temporary file in its folder, renamed when complete.

    Raises:
        DiskSpaceError / NotWritableError: the OS refused the write; `path` is left as it was.
    """
    with writing(path, fix):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = create_temporary(path)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(obj, fh)
                fh.flush()
                os.fsync(fh.fileno())  # a full disk may only show here (delayed allocation, NFS)
            os.replace(tmp, path)
        except BaseException:  # Ctrl-C included: no partial file stays behind
            tmp.unlink(missing_ok=True)
            raise
