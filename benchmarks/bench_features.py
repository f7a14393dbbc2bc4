"""1. Feature extraction for E epochs: transferkit's cached features vs the plain recipe's frozen pass every epoch.

    python benchmarks/bench_features.py --epochs 10 --train-per-class 100 --image-size 32

With `--devices N` it times only the extraction of the train split, in one process and sharded over
N CPU processes (Lightning starts the others by re-running this script):

    python benchmarks/bench_features.py --devices 2 --train-per-class 200 --image-size 32
"""

from __future__ import annotations

import argparse
import shutil
import time

import common
import plain_reference as plain

import transferkit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--devices", type=int, default=1, help="time extraction in 1 vs N CPU processes instead")
    args = parser.parse_args()
    if args.devices > 1:
        sharded_extraction(args.devices, args.train_per_class, args.image_size)
        return
    splits = common.mnist_splits(args.train_per_class)
    size = args.image_size
    plain_s, plain_acc = plain.feature_extraction(plain.loader(*common.arrays(splits["train"]), size, shuffle=True),
                                                  plain.loader(*common.arrays(splits["test"]), size, shuffle=False),
                                                  len(splits["train"].classes), epochs=args.epochs)
    start = time.perf_counter()
    run = transferkit.fit(data="demo:mnist", model="efficientnet_lite0", strategy="feature-extraction", head="linear",
                          epochs=args.epochs, lr=1e-3, patience=0, train_per_class=args.train_per_class, **common.SPLIT,
                          image_size=size, feature_cache=common.fresh_cache(), out=str(common.fresh_folder("features")),
                          progress=False)
    tk_s = time.perf_counter() - start
    common.emit("feature_extraction", data=f"demo:mnist {len(splits['train'])} train / {len(splits['test'])} test",
                model="efficientnet_lite0", image_size=size, epochs=args.epochs,
                transferkit_s=round(tk_s, 2), plain_s=round(plain_s, 2), speedup=common.ratio(plain_s, tk_s),
                transferkit_acc=round(run.metrics["test"]["accuracy"], 4), plain_acc=round(plain_acc, 4))


def sharded_extraction(devices: int, train_per_class: int, size: int) -> None:
    """Seconds to extract the train split's features in one process, then twice in `devices` CPU processes.

    One process first: the processes Lightning starts for the sharded run re-run this script and skip
    it. The first sharded extraction includes starting them (as the first extraction of a
    `fit --devices N` does); the second runs in the started processes (as the next split does).
    """
    import torch

    from transferkit.config import RunConfig
    from transferkit.training import distributed
    from transferkit.training.features import frozen_features
    from transferkit.training.plan import load_splits

    config = RunConfig(data="demo:mnist", model="efficientnet_lite0", train_per_class=train_per_class,
                       image_size=size, accelerator="cpu", **common.SPLIT)
    train = load_splits(config)["train"]
    backbone = transferkit.create_backbone("efficientnet_lite0")
    caches = {run: common.BENCH_ROOT / f"cache-{run}" for run in ("one", "sharded-first", "sharded")}
    if distributed.is_rank_zero():  # before the other processes start
        for cache in caches.values():
            shutil.rmtree(cache, ignore_errors=True)
    seconds, threads = {}, {}
    for run, cache in caches.items():
        processes = 1 if run == "one" else devices
        if processes == 1 and not distributed.is_rank_zero():
            continue
        start = time.perf_counter()
        frozen_features(config.replace(devices=processes, feature_cache=str(cache)), backbone, train)
        seconds[run], threads[run] = round(time.perf_counter() - start, 2), torch.get_num_threads()
    if distributed.is_rank_zero():
        common.emit("sharded_extraction", data=f"demo:mnist {len(train)} train", model="efficientnet_lite0",
                    image_size=size, processes=devices, one_process_s=seconds["one"],
                    sharded_first_s=seconds["sharded-first"], sharded_s=seconds["sharded"],
                    speedup=common.ratio(seconds["one"], seconds["sharded"]), threads_one_process=threads["one"],
                    threads_per_sharded_process=threads["sharded"])

if __name__ == "__main__":
    main()
