"""On-disk cache of frozen-backbone features, keyed by backbone, preprocessing and data.

A cache file is written whole or not at all: its rows stream into a temporary memory-mapped .npy
whose disk space is reserved before the first row (a memory map on a full disk dies of SIGBUS, with
no message), then renamed. A full or read-only cache folder is a one-line error naming it and
--feature-cache; the temporary file of a failed, interrupted or killed extraction is removed, at the
latest by the next run that uses the cache.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from tqdm.auto import tqdm

from transferkit.config import RunConfig
from transferkit.errors import ConfigError, DiskSpaceError, device_of, human_size, writing
from transferkit.files import remove_stale_temporaries, temporary_name
from transferkit.inference import batch_outputs
from transferkit.loading import run_batches

#: What a full or read-only cache folder's message suggests.
CACHE_FIX = "point --feature-cache DIR (or TRANSFERKIT_CACHE) at a folder with room"
#: Space left free beyond a cache file's own size, so that the run folder's writes after it still fit.
SPACE_MARGIN = 1 << 20
_show_progress: ContextVar[bool] = ContextVar("transferkit_feature_progress", default=True)

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("TRANSFERKIT_CACHE", Path.home() / ".cache" / "transferkit")) / "features"


def cache_key(backbone, data, *, image_size: int | None, max_length: int | None, weights: str | None,
              precision: str) -> str:
    """A hash of everything that changes the features."""
    parts = {"version": CACHE_VERSION, "backbone": backbone.name, "pretrained": backbone.pretrained,
             "weights": str(weights) if weights else None, "spec": backbone.data_spec.to_dict(),
             "image_size": image_size, "max_length": max_length, "precision": precision,
             "data": data.fingerprint()}
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def show_progress(enabled: bool) -> None:
    """Show (or not) the feature-extraction bars of this context from now on; `fit(progress=...)` sets it.

    Even when shown, a bar is drawn only on a terminal (tqdm's `disable=None`), and cleared when done:
    a log file or pipe, or a failure, gets no progress lines.
    """
    _show_progress.set(enabled)


def progress_bar(**kwargs) -> tqdm:
    """A transient tqdm bar on stderr, drawn only on a terminal and only when progress is shown."""
    return tqdm(leave=False, dynamic_ncols=True, disable=None if _show_progress.get() else True, **kwargs)


def extract_features(backbone, loader, out_path: Path, total: int, *, precision: str = "32",
                     device: str = "cpu", desc: str = "features") -> np.ndarray:
    """Run the frozen backbone once over `loader`, streaming rows into a memory-mapped .npy.

    Raises:
        DiskSpaceError / NotWritableError: the cache folder is full or read-only; nothing is left behind.
    """
    tmp = temporary_name(out_path, ".tmp.npy")
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(tmp.unlink, missing_ok=True)  # also on Ctrl-C; a no-op once renamed
        array = open_cache_array(tmp, (total, backbone.num_features), what=desc)
        with progress_bar(total=total, desc=desc, unit="sample") as bar:
            for rows, index in batch_outputs(backbone, loader, precision=precision, device=device):
                array[index.numpy()] = rows.numpy()
                bar.update(len(index))
        array.flush()
        del array
        with writing(out_path, CACHE_FIX):
            os.replace(tmp, out_path)
    return np.load(out_path, mmap_mode="r")


def open_cache_array(path: Path, shape: tuple[int, int], *, what: str = "features") -> np.memmap:
    """A new float32 .npy memory map at `path` whose disk space is reserved (or checked) up front.

    Raises:
        DiskSpaceError: the folder's disk has no room for the file (plus `SPACE_MARGIN`).
        NotWritableError: the folder is read-only or forbidden.
    """
    folder = path.parent
    with writing(folder, CACHE_FIX):
        folder.mkdir(parents=True, exist_ok=True)
        size = int(np.prod(shape)) * 4 + 4096  # rows plus at most a page of .npy header
        check_free_space(folder, size, what)
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        try:
            reserve(path)
        except BaseException:
            del array
            path.unlink(missing_ok=True)
            raise
    return array


def check_free_space(folder: Path, size: int, what: str) -> None:
    """Refuse, in one line, to write `size` bytes into `folder` when its disk has less free (plus a margin)."""
    free = shutil.disk_usage(folder).free
    if free < size + SPACE_MARGIN:
        raise DiskSpaceError(f"No space in the feature cache {folder} on {device_of(folder)} ({what}: "
                             f"{human_size(size)} needed, {human_size(free)} free, {human_size(SPACE_MARGIN)} "
                             f"kept spare); free space or {CACHE_FIX}.")


def reserve(path: Path) -> None:
    """Allocate the blocks of the (sparse) file at `path`, so that writing its memory map cannot hit a full disk.

    Raises OSError (ENOSPC) when the disk has no room; a file system that cannot preallocate is trusted
    to the free-space check.
    """
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


def cached_features(backbone, data, make_loader, *, image_size, max_length, weights, precision="32",
                    device="cpu", cache_dir: Path | None = None, desc: str = "features",
                    placement: dict | None = None) -> tuple[np.ndarray, bool]:
    """Features of `data` from the cache, computing them on a miss. Returns (features, was_cached).

    Args:
        placement: the Trainer's accelerator, devices, nodes and strategy (`distributed.trainer_placement`).
            With more than one process, each computes a part of a miss (on its own device, not
            `device`) and the parts are merged into the same cache file one process would write.
    """
    key = cache_key(backbone, data, image_size=image_size, max_length=max_length, weights=weights,
                    precision=precision)
    path = (cache_dir or default_cache_dir()) / f"{key}.npy"
    remove_stale_temporaries(path.parent, ".*.tmp*")  # of extractions killed before they could clean up
    if path.is_file():
        try:
            feats = np.load(path, mmap_mode="r")
            if feats.shape == (len(data), backbone.num_features):
                return feats, True
        except (ValueError, OSError):
            pass  # a damaged cache file is recomputed below
    processes = placement["devices"] * placement["num_nodes"] if placement else 1
    if 1 < processes <= len(data):  # fewer samples than processes: each process extracts them all
        from transferkit.training.distributed import extract_sharded  # deferred: imports lightning

        return extract_sharded(backbone, make_loader(data), path, len(data), placement=placement,
                               precision=precision, desc=desc), False
    return extract_features(backbone, make_loader(data), path, len(data), precision=precision,
                            device=device, desc=desc), False


def frozen_features(cfg: RunConfig, backbone, data, name: str = "data") -> np.ndarray:
    """Features of `data` from the frozen `backbone`, read from the on-disk cache or computed into it."""
    from transferkit.training.distributed import trainer_placement  # deferred: imports lightning

    feats, _ = cached_features(
        backbone, data, lambda d: run_batches(cfg, backbone, d, train=False), image_size=cfg.image_size,
        max_length=cfg.max_length, weights=cfg.weights, precision=cfg.precision, desc=f"features {name}",
        cache_dir=Path(cfg.feature_cache) if cfg.feature_cache else None,
        placement=trainer_placement(cfg))  # several processes share the extraction
    return np.asarray(feats)


def shard_paths(out_path: Path, rank: int, world: int) -> tuple[Path, Path]:
    """(rows, sample indices) of process `rank`'s part of the features bound for `out_path`."""
    stem = f".{out_path.stem}.rank{rank}-of-{world}"
    return out_path.with_name(f"{stem}.f32"), out_path.with_name(f"{stem}.idx")


def merge_shards(out_path: Path, total: int, width: int, world: int, chunk: int = 8192) -> None:
    """Scatter the shards of `world` processes into `out_path` in sample order, then remove them.

    Rows are copied `chunk` at a time between memory maps, so memory stays bounded by the chunk.

    Raises:
        ConfigError: a shard is missing (several machines without a shared cache folder).
        RuntimeError: the shards together do not hold every sample exactly once.
    """
    shards = [shard_paths(out_path, rank, world) for rank in range(world)]
    missing = [str(rank) for rank, (rows_path, _) in enumerate(shards) if not rows_path.is_file()]
    if missing:
        raise ConfigError(f"The features of process {', '.join(missing)} of {world} are missing from "
                          f"{out_path.parent}: every process must read the same data and, with several machines, "
                          "the feature cache must be a folder they all share (--feature-cache or TRANSFERKIT_CACHE).")
    tmp = temporary_name(out_path, ".tmp.npy")
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(tmp.unlink, missing_ok=True)  # also on Ctrl-C; a no-op once renamed
        written = _scatter_shards(open_cache_array(tmp, (total, width)), shards, total, width, chunk)
        if not (written == 1).all():
            raise RuntimeError(f"The {world} processes extracted {int(written.sum())} feature rows for {total} "
                               f"samples ({int((written == 0).sum())} missing, {int((written > 1).sum())} repeated).")
        with writing(out_path, CACHE_FIX):
            os.replace(tmp, out_path)
    for path in (p for pair in shards for p in pair):
        path.unlink(missing_ok=True)


def _scatter_shards(array: np.memmap, shards, total: int, width: int, chunk: int) -> np.ndarray:
    """Copy each shard's rows into `array` at their sample indices; returns how often each sample came."""
    written = np.zeros(total, dtype=np.int64)
    for rows_path, index_path in shards:
        index = np.fromfile(index_path, dtype=np.int64)
        rows = np.memmap(rows_path, dtype=np.float32, mode="r", shape=(len(index), width)) if len(index) else None
        for start in range(0, len(index), chunk):
            array[index[start:start + chunk]] = rows[start:start + chunk]
        np.add.at(written, index, 1)
        del rows
    array.flush()
    return written

