"""2. End-to-end fine-tuning, seconds per epoch: transferkit (Lightning) vs the plain loop; 3. bf16 vs fp32.

    python benchmarks/bench_finetune.py --epochs 2 --train-per-class 50 --image-size 32 --precision 32,bf16
"""

from __future__ import annotations

import argparse

import common
import plain_reference as plain

import transferkit


def compare(splits, args, precision: str) -> None:
    size = args.image_size
    loaders = [plain.loader(*common.arrays(splits[s]), size, shuffle=s == "train") for s in ("train", "val", "test")]
    plain_epoch, plain_acc = plain.fine_tune(*loaders, len(splits["train"].classes), epochs=args.epochs,
                                             bf16=precision == "bf16")
    # Same recipe as the plain loop: head lr 1e-3, backbone 0.1x, no probe, no early stop.
    run = transferkit.fit(data="demo:mnist", model="efficientnet_lite0", strategy="full", epochs=args.epochs,
                          lr=1e-3, patience=0, probe_init=False, train_per_class=args.train_per_class, **common.SPLIT,
                          image_size=size, precision=precision, out=str(common.fresh_folder(f"finetune-{precision}")),
                          progress=False)
    tk_epoch = run.metrics["train_seconds"] / run.metrics["epochs_run"]
    common.emit("fine_tuning", data=f"demo:mnist {len(splits['train'])} train / {len(splits['val'])} val",
                model="efficientnet_lite0", image_size=size, epochs=args.epochs, precision=precision,
                transferkit_s_per_epoch=round(tk_epoch, 2), plain_s_per_epoch=round(plain_epoch, 2),
                overhead=common.ratio(tk_epoch, plain_epoch),
                transferkit_acc=round(run.metrics["test"]["accuracy"], 4), plain_acc=round(plain_acc, 4))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--precision", default="32,bf16", help="comma-separated: 32 and/or bf16")
    args = parser.parse_args()
    splits = common.mnist_splits(args.train_per_class)
    for precision in args.precision.split(","):
        compare(splits, args, precision)


if __name__ == "__main__":
    main()
