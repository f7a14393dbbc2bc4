"""1. Feature extraction for E epochs: transferkit's cached features vs the plain recipe's frozen pass every epoch.

    python benchmarks/bench_features.py --epochs 10 --train-per-class 100 --image-size 32
"""

from __future__ import annotations

import argparse
import time

import common
import plain_reference as plain

import transferkit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
