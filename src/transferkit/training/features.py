"""On-disk cache of frozen-backbone features, keyed by backbone, preprocessing and data."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tqdm.auto import tqdm

from transferkit.config import RunConfig
from transferkit.errors import ConfigError
from transferkit.inference import batch_outputs
from transferkit.loading import run_batches

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


def extract_features(backbone, loader, out_path: Path, total: int, *, precision: str = "32",
                     device: str = "cpu", desc: str = "features") -> np.ndarray:
    """Run the frozen backbone once over `loader`, streaming rows into a memory-mapped .npy."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp.npy")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total, backbone.num_features))
    with tqdm(total=total, desc=desc, unit="sample", leave=False, dynamic_ncols=True) as bar:
        for rows, index in batch_outputs(backbone, loader, precision=precision, device=device):
            array[index.numpy()] = rows.numpy()
            bar.update(len(index))
    array.flush()
    del array
    os.replace(tmp, out_path)
    return np.load(out_path, mmap_mode="r")


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
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp.npy")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total, width))
    written = np.zeros(total, dtype=np.int64)
    for rows_path, index_path in shards:
        index = np.fromfile(index_path, dtype=np.int64)
        rows = np.memmap(rows_path, dtype=np.float32, mode="r", shape=(len(index), width)) if len(index) else None
        for start in range(0, len(index), chunk):
            array[index[start:start + chunk]] = rows[start:start + chunk]
        np.add.at(written, index, 1)
        del rows
    array.flush()
    del array
    if not (written == 1).all():
        tmp.unlink()
        raise RuntimeError(f"The {world} processes extracted {int(written.sum())} feature rows for {total} samples "
                           f"({int((written == 0).sum())} missing, {int((written > 1).sum())} repeated).")
    os.replace(tmp, out_path)
    for path in (p for pair in shards for p in pair):
        path.unlink(missing_ok=True)

