"""Pretrained strategies vs training from scratch on bundled real data; prints JSON lines.

    python benchmarks/core_transfer.py --suite mnist   # EfficientNet-Lite0, MNIST-5k, 50 labels/class
    python benchmarks/core_transfer.py --suite reviews # MiniLM-L6, Rotten Tomatoes, 1,000 snippets
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import transferkit

SUITES = {
    "mnist": dict(data="demo:mnist", model="efficientnet_lite0", train_per_class=50, image_size=64),
    "reviews": dict(data="demo:rotten-tomatoes", model="minilm-l6", train_per_class=500, max_length=64),
}
STRATEGIES = {"feature-extraction": {}, "full": {}, "scratch": {}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", choices=sorted(SUITES), default="mnist")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-core")
    parser.add_argument("--precision", default="32")
    args = parser.parse_args()
    for strategy in args.strategies.split(","):
        name, _, head = strategy.partition("+")
        folder = Path(args.out) / f"{args.suite}-{strategy}-s{args.seed}"
        shutil.rmtree(folder, ignore_errors=True)
        options = dict(SUITES[args.suite], strategy=name, seed=args.seed, out=str(folder),
                       precision=args.precision, progress=False)
        if head == "std":
            options["standardize"] = True
        elif head:
            options["head"] = head
        start = time.perf_counter()
        run = transferkit.fit(**options)
        m = run.metrics
        print(json.dumps({"suite": args.suite, "strategy": strategy, "seed": args.seed,
                          "test_accuracy": round(m["test"]["accuracy"], 4),
                          "test_macro_f1": round(m["test"]["macro_f1"], 4),
                          "val_accuracy": round(m["val"]["accuracy"], 4),
                          "train_seconds": m["train_seconds"], "wall_seconds": round(time.perf_counter() - start, 1),
                          "epochs": m["epochs_run"], "trainable_params": m["trainable_params"],
                          "n_train": m["n_train"], "n_test": m["n_test"]}), flush=True)


if __name__ == "__main__":
    main()
