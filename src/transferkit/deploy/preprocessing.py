"""Every input step of `transferkit predict`, written down so code without transferkit can repeat it exactly.

Images: the steps are read off the very transform predict builds (timm's evaluation transform:
torchvision Resize, CenterCrop, ToTensor, Normalize on a Pillow image), so the record cannot drift
from what predict does; a step this module cannot describe stops the export. Text: the fast
tokenizer's file with the truncation and padding predict asks for.
"""

from __future__ import annotations

from transferkit.errors import ExportError

#: How pixels reach the graph: float32 in 0..1 (divided by 255) or uint8 in 0..255.
PIXEL_DIVISORS = {"float32": 255.0, "uint8": 1.0}


def image_preprocessing(transform, *, input_dtype: str) -> dict:
    """The steps of a torchvision `Compose` of eval transforms as plain JSON-ready dicts.

    Args:
        transform: the transform `transferkit predict` applies (from `build_image_transform`).
        input_dtype: "float32" (the graph takes 0..1) or "uint8" (the graph takes 0..255).

    Raises:
        ExportError: a step is not one of Resize, timm's ResizeKeepRatio (without randomness), CenterCrop,
            ToTensor, Normalize.
    """
    from timm.data.transforms import ResizeKeepRatio
    from torchvision import transforms as T

    steps = []
    for step in getattr(transform, "transforms", [transform]):
        if isinstance(step, T.Resize):
            steps.append(_resize(step))
        elif isinstance(step, ResizeKeepRatio) and not (step.random_scale_prob or step.random_aspect_prob):
            steps.append({"op": "resize_keep_ratio", "height": int(step.size[0]), "width": int(step.size[1]),
                          "longest": float(step.longest), "interpolation": _interpolation(step.interpolation),
                          "library": "Pillow Image.resize (antialiased)",
                          "rule": "ratio = max(h/height, w/width) * longest + min(...) * (1 - longest); "
                                  "new size = round(h / ratio), round(w / ratio)"})
        elif isinstance(step, T.CenterCrop):
            height, width = step.size
            steps.append({"op": "center_crop", "height": int(height), "width": int(width),
                          "offset": "round((in - out) / 2)", "pad": "zeros, where the image is smaller"})
        elif isinstance(step, T.ToTensor):  # timm's MaybeToTensor included
            steps.append({"op": "to_array", "dtype": input_dtype, "divide_by": PIXEL_DIVISORS[input_dtype],
                          "value_range": "0..1" if input_dtype == "float32" else "0..255",
                          "channel_order": "RGB", "layout": "NCHW"})
        elif isinstance(step, T.Normalize):
            steps.append({"op": "normalize", "mean": [float(x) for x in step.mean],
                          "std": [float(x) for x in step.std], "in_model": True,
                          "formula": "(pixels_0_to_1 - mean) / std, per channel"})
        else:
            raise ExportError(f"Cannot describe the image transform step {step!r} for a standalone predictor; "
                              "export supports Resize, CenterCrop, ToTensor and Normalize.")
    return {"input": "pixels", "library": "Pillow", "color_mode": "RGB", "steps": steps}


def _resize(step) -> dict:
    size = step.size
    common = {"op": "resize", "interpolation": _interpolation(step.interpolation),
              "library": "Pillow Image.resize (antialiased)"}
    if isinstance(size, int) or len(size) == 1:
        short = int(size if isinstance(size, int) else size[0])
        return {**common, "edge": "shorter", "size": short, "max_size": step.max_size,
                "longer_edge": "int(size * longer / shorter)"}
    return {**common, "edge": "both", "height": int(size[0]), "width": int(size[1])}


def _interpolation(mode) -> str:
    return str(getattr(mode, "value", mode))


def text_preprocessing(tokenizer, *, max_length: int, inputs) -> dict:
    """How texts become `input_ids` and `attention_mask`, as predict's tokenizer call makes them.

    Args:
        tokenizer: the run's transformers tokenizer (must be a fast one, backed by `tokenizers`).
        max_length: the token budget predict truncates to.
        inputs: the graph's input names.

    Raises:
        ExportError: the tokenizer has no `tokenizers` (fast) version.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"The run's tokenizer ({type(tokenizer).__name__}) has no fast version, so the "
                          "standalone predictor cannot tokenize with the `tokenizers` package.")
    return {"inputs": list(inputs), "library": "tokenizers", "tokenizer_file": "tokenizer/tokenizer.json",
            "tokenizer_folder": "tokenizer", "max_length": int(max_length), "add_special_tokens": True,
            "truncation": {"max_length": int(max_length), "strategy": "longest_first",
                           "side": tokenizer.truncation_side},
            "padding": {"to": "longest text in the batch", "side": tokenizer.padding_side,
                        "pad_token": tokenizer.pad_token, "pad_id": int(tokenizer.pad_token_id),
                        "pad_type_id": int(tokenizer.pad_token_type_id)},
            "dtype": "int64"}
