"""Feature extraction sharded over two gloo processes: each extracts part, the cache file is the single-process one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import transferkit
from transferkit.config import RunConfig
from transferkit.errors import ConfigError
from transferkit.training import features
from transferkit.training.features import frozen_features
from transferkit.training.plan import load_splits

#: 50 train (5 a class), 35 validation and 50 test digits; the odd split gives one rank a sample more.
SLICE = dict(data="demo:mnist", model="tiny-cnn", image_size=16, batch_size=8, train_per_class=5, seed=0,
             val_fraction=0.007, test_fraction=0.01)

DRIVER = textwrap.dedent('''
    import json
    import logging
    import sys
    from pathlib import Path

    import numpy as np

    import transferkit
    from transferkit.config import RunConfig
    from transferkit.training import distributed
    from transferkit.training.features import frozen_features
    from transferkit.training.plan import load_splits

    root = Path(sys.argv[1])
    slice_ = json.loads(sys.argv[2])
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("transferkit").setLevel(logging.INFO)  # each rank's "extracted N of M samples"

    if __name__ == "__main__":
        config = RunConfig(**slice_, devices=2, accelerator="cpu", feature_cache=str(root / "cache"))
        train = load_splits(config)["train"]
        feats = frozen_features(config, transferkit.create_backbone("tiny-cnn"), train, "train")
        np.save(root / f"returned-rank{distributed.global_rank()}.npy", feats)
        transferkit.fit(**slice_, strategy="feature-extraction", devices=2, accelerator="cpu",
                        feature_cache=str(root / "fit-cache"), out=str(root / "run"), progress=False)
''')

EXTRACTED = re.compile(r"features (\w+): rank (\d) of 2 extracted (\d+) of (\d+) samples")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """One two-process launch (Lightning starts rank 1): a sharded extraction, then a feature-extraction fit."""
    root = tmp_path_factory.mktemp("sharded")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "SLURM_PROCID"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, str(driver), str(root), json.dumps(SLICE)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc.stderr


def single_process_config(cache: Path) -> RunConfig:
    return RunConfig(**SLICE, feature_cache=str(cache))


def test_sharded_features_equal_single_process_features_in_order(sharded, tmp_path):
    root, _ = sharded
    config = single_process_config(tmp_path / "single-cache")
    single = frozen_features(config, transferkit.create_backbone("tiny-cnn"), load_splits(config)["train"])
    (cache_file,) = (root / "cache").iterdir()
    assert cache_file.name == next((tmp_path / "single-cache").iterdir()).name  # the same cache key
    np.testing.assert_allclose(np.load(cache_file), single, rtol=1e-5, atol=1e-6)
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(root / f"returned-rank{rank}.npy"), single, rtol=1e-5, atol=1e-6)


def test_each_rank_extracted_a_disjoint_half(sharded):
    _, log = sharded
    counts = {(split, int(rank)): (int(done), int(total)) for split, rank, done, total in EXTRACTED.findall(log)}
    assert counts[("train", 0)] == (25, 50) and counts[("train", 1)] == (25, 50), log[-3000:]
    assert counts[("val", 0)] == (18, 35) and counts[("val", 1)] == (17, 35)  # from the fit


def test_a_single_process_reuses_the_sharded_cache(sharded, monkeypatch):
    root, _ = sharded

    def no_extraction(*args, **kwargs):
        raise AssertionError("the sharded cache was not reused")

    monkeypatch.setattr(features, "extract_features", no_extraction)
    config = single_process_config(root / "cache")
    train = load_splits(config)["train"]
    feats, cached = features.cached_features(
        transferkit.create_backbone("tiny-cnn"), train, None, image_size=16, max_length=None, weights=None,
        cache_dir=root / "cache")
    backbone = transferkit.create_backbone("tiny-cnn")
    assert cached and feats.shape == (50, backbone.num_features)
    key = features.cache_key(backbone, train, image_size=16, max_length=None, weights=None, precision="32")
    assert [p.name for p in (root / "cache").iterdir()] == [f"{key}.npy"]  # shards and temporary files are gone


def test_a_two_process_feature_extraction_fit_matches_one_process_from_the_same_cache(sharded, tmp_path,
                                                                                      monkeypatch):
    root, _ = sharded
    ddp = transferkit.load_run(root / "run")
    assert ddp.config.devices == 2
    assert sorted(p.suffix for p in (root / "fit-cache").iterdir()) == [".npy", ".npy"]  # train and val, merged

    def no_extraction(*args, **kwargs):
        raise AssertionError("the sharded cache was not reused")

    monkeypatch.setattr(features, "extract_features", no_extraction)
    single = transferkit.fit(**SLICE, strategy="feature-extraction", feature_cache=str(root / "fit-cache"),
                             out=str(tmp_path / "single"), progress=False)
    assert single.metrics["test"] == pytest.approx(ddp.metrics["test"])


def test_merge_names_a_missing_shard_and_leaves_no_cache_file(tmp_path):
    out = tmp_path / "key.npy"
    rows, index = features.shard_paths(out, 0, 2)
    np.ones((2, 3), np.float32).tofile(rows)
    np.array([0, 2], np.int64).tofile(index)
    with pytest.raises(ConfigError, match="features of process 1 of 2 are missing .* must be a folder they all share"):
        features.merge_shards(out, 4, 3, world=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([rows.name, index.name])


def test_merge_scatters_shards_into_sample_order(tmp_path):
    out = tmp_path / "key.npy"
    expected = np.arange(15, dtype=np.float32).reshape(5, 3)
    for rank in (0, 1):
        rows, index = features.shard_paths(out, rank, 2)
        expected[rank::2].tofile(rows)
        np.arange(rank, 5, 2, dtype=np.int64).tofile(index)
    features.merge_shards(out, 5, 3, world=2, chunk=2)
    np.testing.assert_array_equal(np.load(out), expected)
    assert [p.name for p in tmp_path.iterdir()] == ["key.npy"]
