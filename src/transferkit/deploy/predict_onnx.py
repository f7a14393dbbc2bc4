"""Predict with an exported transferkit model using ONNX Runtime alone: no torch, no transferkit.

Usage (inside the export folder, next to model.onnx and transferkit_export.json):

    python predict_onnx.py photo1.jpg photo2.png images/      # image models: files or folders
    python predict_onnx.py texts.txt                           # text models: one text per line

It prints CSV to stdout: `input,prediction,probability` (classification) or `input,prediction`
(regression). It needs onnxruntime, numpy and Pillow, plus `tokenizers` for text models. Every
preprocessing step is read from transferkit_export.json and applied exactly as `transferkit predict`
applies it (Pillow decoding and resizing, the same rounding of sizes and crop offsets).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


def resized_size(width: int, height: int, step: dict) -> tuple[int, int]:
    """(width, height) after a resize step, with torchvision's rounding of the longer edge."""
    if step["edge"] == "both":
        return int(step["width"]), int(step["height"])
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = int(step["size"]), int(int(step["size"]) * long / short)
    max_size = step.get("max_size")
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), int(max_size)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def resize(image, step: dict):
    """Resize a Pillow image as the step says (Pillow always antialiases bilinear and bicubic)."""
    from PIL import Image

    if step["interpolation"] not in INTERPOLATIONS:
        raise UsageError(f"Unknown interpolation {step['interpolation']!r} in transferkit_export.json.")
    method = getattr(Image.Resampling, step["interpolation"].upper())
    return image.resize(resized_size(image.width, image.height, step), method)


def resize_keep_ratio(image, step: dict):
    """Scale both sides by one ratio between fitting the shorter and the longer side (timm's ResizeKeepRatio)."""
    ratio_h, ratio_w = image.height / step["height"], image.width / step["width"]
    ratio = max(ratio_h, ratio_w) * step["longest"] + min(ratio_h, ratio_w) * (1.0 - step["longest"])
    explicit = {**step, "edge": "both", "height": round(image.height / ratio), "width": round(image.width / ratio)}
    return resize(image, explicit)


def center_crop(image, step: dict):
    """Crop the centre (height x width); pad with zeros first where the image is smaller."""
    from PIL import Image

    crop_h, crop_w = int(step["height"]), int(step["width"])
    if crop_w > image.width or crop_h > image.height:
        left = (crop_w - image.width) // 2 if crop_w > image.width else 0
        top = (crop_h - image.height) // 2 if crop_h > image.height else 0
        canvas = Image.new(image.mode, (image.width + max(crop_w - image.width, 0),
                                        image.height + max(crop_h - image.height, 0)), 0)
        canvas.paste(image, (left, top))
        image = canvas
    top = int(round((image.height - crop_h) / 2.0))
    left = int(round((image.width - crop_w) / 2.0))
    return image.crop((left, top, left + crop_w, top + crop_h))


def to_array(image, step: dict) -> np.ndarray:
    """HWC uint8 -> CHW in the input's dtype; float32 is divided by 255 in float32, as torchvision does."""
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if step["channel_order"] == "BGR":
        pixels = pixels[:, :, ::-1]
    if step["dtype"] == "float32":
        pixels = pixels.astype(np.float32) / np.float32(step["divide_by"])
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def normalize(pixels: np.ndarray, step: dict) -> np.ndarray:
    mean = np.asarray(step["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(step["std"], dtype=np.float32).reshape(-1, 1, 1)
    return (pixels - mean) / std


STEPS = {"resize": resize, "resize_keep_ratio": resize_keep_ratio, "center_crop": center_crop}


def preprocess_image(path, preprocessing: dict) -> np.ndarray:
    """One image file -> the (C, H, W) array the model's `pixels` input takes."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.convert(preprocessing["color_mode"])
    except Exception as exc:  # Pillow raises many exception types for broken files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"Cannot read image {path}: {reason}.") from None
    pixels = None
    for step in preprocessing["steps"]:
        if step["op"] in STEPS:
            image = STEPS[step["op"]](image, step)
        elif step["op"] == "to_array":
            pixels = to_array(image, step)
        elif step["op"] == "normalize":
            if not step["in_model"]:
                pixels = normalize(pixels, step)
        else:
            raise UsageError(f"Unknown preprocessing step {step['op']!r}; this script is older than the export.")
    return pixels


def image_batches(paths: list[str], preprocessing: dict, batch_size: int):
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        yield chunk, {preprocessing["input"]: np.stack([preprocess_image(p, preprocessing) for p in chunk])}


def load_tokenizer(folder: Path, preprocessing: dict):
    """The `tokenizers` tokenizer with the recorded truncation and padding switched on."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UsageError("Text models need the `tokenizers` package: pip install tokenizers.") from None
    tokenizer = Tokenizer.from_file(str(folder / preprocessing["tokenizer_file"]))
    truncation, padding = preprocessing["truncation"], preprocessing["padding"]
    tokenizer.enable_truncation(max_length=int(truncation["max_length"]), strategy=truncation["strategy"],
                                direction=truncation["side"])
    tokenizer.enable_padding(direction=padding["side"], pad_id=int(padding["pad_id"]),
                             pad_type_id=int(padding["pad_type_id"]), pad_token=padding["pad_token"])
    return tokenizer


def text_batches(texts: list[str], preprocessing: dict, batch_size: int, folder: Path):
    tokenizer = load_tokenizer(folder, preprocessing)
    add_special = bool(preprocessing["add_special_tokens"])
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        encoded = tokenizer.encode_batch(chunk, add_special_tokens=add_special)
        arrays = {"input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                  "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64)}
        yield chunk, {name: arrays[name] for name in preprocessing["inputs"]}


def read_texts(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Cannot read the text file {path}: {exc}.") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise UsageError(f"{path} line {number} is empty; give one non-empty text per line.")
    if not lines:
        raise UsageError(f"{path} holds no text; give one text per line.")
    return lines


def image_paths(items: list[str]) -> list[str]:
    """Files as given; folders become their image files (recursively, sorted)."""
    paths = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths += sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            paths.append(item)
        else:
            raise UsageError(f"Image not found: {item}.")
    if not paths:
        raise UsageError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(items)}.")
    return paths


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def predict(model: Path, items: list[str], batch_size: int = 32):
    """Yield one CSV row per input: (input, prediction, probability) or (input, value)."""
    import onnxruntime as ort

    info = json.loads((model.parent / "transferkit_export.json").read_text(encoding="utf-8"))
    preprocessing = info["preprocessing"]
    if info["modality"] == "text":
        if len(items) != 1:
            raise UsageError("Text models take one text file (one text per line).")
        batches = text_batches(read_texts(items[0]), preprocessing, batch_size, model.parent)
    else:
        batches = image_batches(image_paths(items), preprocessing, batch_size)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    classes = info["classes"]
    for names, feeds in batches:
        outputs = session.run(None, feeds)[0]
        if classes:
            probabilities = softmax(outputs.astype(np.float64))
            for name, row in zip(names, probabilities):
                yield name, classes[int(row.argmax())], f"{row.max():.6f}"
        else:
            for name, value in zip(names, outputs.reshape(-1)):
                yield name, f"{float(value):.6g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="image files or folders, or one text file (one text per line)")
    parser.add_argument("--model", type=Path, default=HERE / "model.onnx",
                        help="the .onnx file; transferkit_export.json must sit beside it (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="inputs per ONNX Runtime call (default: 32)")
    args = parser.parse_args(argv)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    try:
        if not (args.model.parent / "transferkit_export.json").is_file():
            raise UsageError(f"No transferkit_export.json beside {args.model}; pass --model EXPORT/model.onnx.")
        rows = predict(args.model, args.inputs, max(1, args.batch_size))
        first = next(rows, None)
        if first is not None:
            writer.writerow(("input", "prediction", "probability")[:len(first)])
            writer.writerow(first)
            writer.writerows(rows)
    except UsageError as exc:
        print(f"predict_onnx: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `| head` closed the pipe: stop quietly, also at interpreter exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
