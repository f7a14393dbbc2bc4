"""What `--strategy auto` chooses on a demo set, against every registered strategy; prints JSON lines.

    python benchmarks/auto_choice.py --suite mnist    # EfficientNet-Lite0, MNIST-5k, 50 labels/class, 64 px
    python benchmarks/auto_choice.py --suite digits   # EfficientNet-Lite0, UCI optdigits, all labels, 32 px
    python benchmarks/auto_choice.py --suite reviews  # MiniLM-L6, Rotten Tomatoes, 500 labels/class

Each strategy trains with its defaults (or --epochs for all) on the same split; finished runs in
--out are reused, and the strategy auto chose is not fitted a second time (auto's run is that run).
The last line compares auto's choice with the median test accuracy of the strategies.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import transferkit
from transferkit.errors import RunFolderError
from transferkit.strategies import STRATEGIES

SUITES = {
    "mnist": dict(data="demo:mnist", model="efficientnet_lite0", train_per_class=50, image_size=64),
    "digits": dict(data="demo:digits", model="efficientnet_lite0", image_size=32),
    "reviews": dict(data="demo:rotten-tomatoes", model="minilm-l6", train_per_class=500, max_length=64),
}


def finished_or_fit(folder: Path, **options) -> transferkit.Run:
    try:
        return transferkit.load_run(folder)
    except RunFolderError:
        return transferkit.fit(out=str(folder), resume=(folder / "config.yaml").is_file(), progress=False, **options)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", choices=sorted(SUITES), default="mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-auto")
    parser.add_argument("--epochs", type=int, help="epochs of every strategy (default: each one's own)")
    parser.add_argument("--val-fraction", type=float)
    parser.add_argument("--test-fraction", type=float)
    args = parser.parse_args()
    # Domain adaptation needs unlabeled target data, which these suites do not have.
    concrete = [n for n in STRATEGIES.names()
                if not STRATEGIES.get(n).resolves_from_data and not STRATEGIES.get(n).needs_target_data]
    common = dict(SUITES[args.suite], seed=args.seed, epochs=args.epochs, val_fraction=args.val_fraction,
                  test_fraction=args.test_fraction)
    accuracy, runs = {}, {}
    for strategy in ["auto", *concrete]:
        folder = Path(args.out) / f"{args.suite}-{strategy}-s{args.seed}"
        chosen = runs.get("auto") and runs["auto"].metrics["strategy"]
        run = runs["auto"] if strategy == chosen else finished_or_fit(folder, **common, strategy=strategy)
        runs[strategy] = run
        m = run.metrics
        accuracy[strategy] = m["test"]["accuracy"]
        line = {"suite": args.suite, "strategy": strategy, "trained": m["strategy"],
                "test_accuracy": round(m["test"]["accuracy"], 4), "train_seconds": m["train_seconds"],
                "epochs": m["epochs_run"], "n_train": m["n_train"], "n_test": m["n_test"]}
        if "strategy_choice" in m:
            line["reasons"] = m["strategy_choice"]["reasons"]
            line["signals"] = m["strategy_choice"]["signals"]
        print(json.dumps(line), flush=True)
    median = statistics.median(accuracy[s] for s in concrete)
    chose = runs["auto"].metrics["strategy"]
    better = sum(accuracy[s] > accuracy["auto"] for s in concrete)
    print(json.dumps({"suite": args.suite, "auto_chose": chose, "auto_test_accuracy": round(accuracy["auto"], 4),
                      "median_strategy_accuracy": round(median, 4), "at_least_median": accuracy["auto"] >= median,
                      "strategies_better_than_auto": better, "of": len(concrete)}), flush=True)


if __name__ == "__main__":
    main()
