"""4. Inference throughput: transferkit's predict path vs eager PyTorch vs ONNX Runtime after `transferkit export`.

    python benchmarks/bench_inference.py --suite mnist --n 500
    python benchmarks/bench_inference.py --suite reviews --n 300

transferkit's predict starts from raw inputs (preprocessing included); eager PyTorch and ONNX Runtime
start from batches prepared before the clock starts (images) or tokenize inside it (text).
"""

from __future__ import annotations

import argparse
import time

import common
import numpy as np
import torch

import transferkit
from transferkit.data import LabeledData, make_loader

SUITES = {
    "mnist": dict(data="demo:mnist", model="efficientnet_lite0", train_per_class=20, image_size=32, **common.SPLIT),
    "reviews": dict(data="demo:rotten-tomatoes", model="minilm-l6", train_per_class=50, max_length=64,
                    val_fraction=0.01, test_fraction=0.03),
}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def image_paths(run, inputs, session, batch: int):
    data = LabeledData(inputs, None, "image", "classification", None, "bench")
    spec = run.model.backbone.data_spec
    prepared = [x for x, _, _ in make_loader(data, spec=spec, image_size=run.meta.image_size, batch_size=batch)]
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    pixels = [(x * std + mean).numpy() for x in prepared]  # the export takes 0..1 pixels, normalises itself

    def eager():
        with torch.inference_mode():
            return np.concatenate([run.model(x).softmax(-1).numpy() for x in prepared])

    def onnx():
        return np.concatenate([_softmax(session.run(None, {"pixels": p})[0]) for p in pixels])

    return eager, onnx


def text_paths(run, inputs, session, batch: int, tokenizer):
    chunks = [inputs[i:i + batch] for i in range(0, len(inputs), batch)]
    max_length = run.meta.max_length

    def eager():
        with torch.inference_mode():
            return np.concatenate([run.model(run.model.backbone.tokenize(c, max_length)).softmax(-1).numpy()
                                   for c in chunks])

    def onnx():
        outs = []
        for c in chunks:
            enc = tokenizer(c, padding=True, truncation=True, max_length=max_length, return_tensors="np")
            outs.append(_softmax(session.run(None, {"input_ids": enc["input_ids"],
                                                    "attention_mask": enc["attention_mask"]})[0]))
        return np.concatenate(outs)

    return eager, onnx


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def main() -> None:
    import onnxruntime as ort
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", choices=sorted(SUITES), default="mnist")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    run = transferkit.fit(**SUITES[args.suite], out=str(common.fresh_folder(f"inference-{args.suite}")),
                          feature_cache=common.fresh_cache(), progress=False)
    export_s, exported = timed(lambda: transferkit.export(run.folder))
    session = ort.InferenceSession(str(exported.model_path), providers=["CPUExecutionProvider"])
    inputs = _inputs(run, args.n)
    if args.suite == "mnist":
        eager, onnx = image_paths(run, inputs, session, args.batch)
    else:
        eager, onnx = text_paths(run, inputs, session, args.batch,
                                 AutoTokenizer.from_pretrained(str(exported.folder / "tokenizer")))
    tk_s, rows = timed(lambda: run.predict(inputs))
    eager_s, eager_p = timed(eager)
    onnx_s, onnx_p = timed(onnx)
    tk_p = np.array([[r[f"p_{c}"] for c in run.meta.classes] for r in rows])
    common.emit("inference", suite=args.suite, model=run.config.model, n=len(inputs), batch=args.batch,
                transferkit_per_s=round(len(inputs) / tk_s, 1), eager_per_s=round(len(inputs) / eager_s, 1),
                onnx_per_s=round(len(inputs) / onnx_s, 1), onnx_vs_eager=common.ratio(eager_s, onnx_s),
                export_s=round(export_s, 2), export_max_abs_diff=exported.max_abs_diff,
                max_prob_diff_onnx=float(np.abs(onnx_p - eager_p).max()),
                max_prob_diff_predict=float(np.abs(tk_p - eager_p).max()),
                test_acc=round(run.metrics["test"]["accuracy"], 4))


def _inputs(run, n: int) -> list:
    from transferkit.training.plan import load_splits

    test = load_splits(run.config)["test"]
    repeats = -(-n // len(test))
    return (list(test.inputs) * repeats)[:n]


if __name__ == "__main__":
    main()
