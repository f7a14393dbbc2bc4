"""5. Scaling: time and peak memory of feature extraction and of one fine-tuning epoch at 1x, 2x, 4x, 8x the data.

    python benchmarks/bench_scaling.py --extract-base 1000 --finetune-base 25 --multiples 1,2,4,8

Each size runs in a fresh child process, so its peak memory is its own. Extraction tiles demo:mnist
to any size (`--extract-base 12500` reaches 100k at 8x); fine-tuning takes N labels per class.
Peak RSS counts the pages of the memory-mapped feature file too; peak anonymous memory (sampled
every 20 ms) is what the process itself holds, and is what stays flat while the cache streams to disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import common


class PeakAnon:
    """Samples RssAnon from /proc/self/status in a thread; `.peak_mb` is the largest seen."""

    def __init__(self, every: float = 0.02):
        self.peak_kb, self.every, self.stop = 0, every, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stop.is_set():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            time.sleep(self.every)

    @property
    def peak_mb(self) -> float:
        self.stop.set()
        self.thread.join()
        return round(self.peak_kb / 1024, 1)


def child_extract(n: int, image_size: int) -> dict:
    from transferkit.backbones import create_backbone
    from transferkit.data import LabeledData, load_data, make_loader
    from transferkit.training.features import extract_features

    mnist = load_data("demo:mnist")["all"]
    tiled = LabeledData((list(mnist.inputs) * -(-n // len(mnist)))[:n], None, "image", "classification", None, "tiled")
    backbone = create_backbone("efficientnet_lite0")
    loader = make_loader(tiled, spec=backbone.data_spec, image_size=image_size, batch_size=64)
    sampler = PeakAnon()
    start = time.perf_counter()
    feats = extract_features(backbone, loader, Path(common.fresh_cache()) / "scaling.npy", n, desc="extract")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_anon_mb": sampler.peak_mb, "feature_mb": round(feats.nbytes / 2**20, 1)}


def child_finetune(per_class: int, image_size: int) -> dict:
    import transferkit

    sampler = PeakAnon()
    run = transferkit.fit(data="demo:mnist", model="efficientnet_lite0", strategy="full", epochs=1, patience=0,
                          probe_init=False, train_per_class=per_class, image_size=image_size, val_fraction=0.02,
                          test_fraction=0.02, out=str(common.fresh_folder(f"scaling-ft-{per_class}")), progress=False)
    return {"seconds": run.metrics["train_seconds"], "peak_anon_mb": sampler.peak_mb, "n": run.metrics["n_train"]}


def run_child(kind: str, size: int, image_size: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--size", str(size),
                          "--image-size", str(image_size)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extract-base", type=int, default=1000, help="images extracted at 1x")
    parser.add_argument("--finetune-base", type=int, default=25, help="labels per class fine-tuned at 1x")
    parser.add_argument("--multiples", default="1,2,4,8")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--child", choices=["extract", "finetune"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = (child_extract if args.child == "extract" else child_finetune)(args.size, args.image_size)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(result))
        return
    for kind, base in (("extract", args.extract_base), ("finetune", args.finetune_base)):
        for multiple in map(int, args.multiples.split(",")):
            r = run_child(kind, base * multiple, args.image_size)
            n = r.pop("n", base * multiple)
            common.emit("scaling", stage="feature_extraction" if kind == "extract" else "fine_tuning_epoch",
                        data=f"demo:mnist {'tiled' if kind == 'extract' else 'labels'}", multiple=multiple, n=n,
                        image_size=args.image_size, seconds=round(r["seconds"], 2),
                        per_s=round(n / r["seconds"], 1), **{k: v for k, v in r.items() if k != "seconds"})


if __name__ == "__main__":
    main()
