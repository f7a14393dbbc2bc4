"""A run's model as pieces other libraries load: the backbone in its own format, the head beside it.

`save_native_model(RUN/model, model)` writes the backbone through `Backbone.save_native` (timm:
backbone.safetensors; transformers: encoder/), the head as head.safetensors, and returns the
description of how they fit together, for the run's transferkit.json:

    outputs = head(backbone_features)      # classification: softmax(outputs) in the order of classes
    value = outputs[:, 0] * std + mean      # regression, in the target's units
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from transferkit.backbones.base import save_tensors
from transferkit.errors import ExportError

HEAD_FILE = "head.safetensors"


def save_native_model(folder: str | Path, model, *, target_stats: tuple[float, float] | None = None) -> dict[str, Any]:
    """Save `model` (a TransferModel) as a native backbone plus a head, and say how they compose.

    Args:
        folder: the run's model folder (RUN/model).
        model: the trained TransferModel, adapters merged (what the strategy's export_model returns).
        target_stats: (mean, std) of a regression target; None for classification.

    Returns:
        {"backbone": ..., "head": ..., "outputs": ...}: JSON-ready, for transferkit.json.

    Raises:
        ExportError: the head holds a layer other than Linear, ReLU or Dropout, or the backbone
            still holds PEFT adapters.
    """
    folder = Path(folder)
    head = describe_head(model.head)
    backbone = model.backbone.save_native(folder)
    save_tensors(model.head.state_dict(), folder / HEAD_FILE, {"library": "transferkit", "part": "head"})
    if target_stats is None:
        outputs = "logits = head(features); softmax over them gives the probabilities, in the order of classes"
    else:
        mean, std = (float(x) for x in target_stats)
        outputs = f"value = head(features)[:, 0] * {std!r} + {mean!r} (the target's units)"
    return {"backbone": backbone, "head": {"file": HEAD_FILE, "layers": head}, "outputs": outputs}


def describe_head(head: nn.Module) -> list[dict[str, Any]]:
    """The head's layers in order, each with the head.safetensors keys of its weights."""
    layers = head if isinstance(head, nn.Sequential) else [head]
    prefix = (lambda i: f"{i}.") if isinstance(head, nn.Sequential) else (lambda i: "")
    described = []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            described.append({"type": "linear", "in_features": layer.in_features, "out_features": layer.out_features,
                              "weight": f"{prefix(i)}weight", "bias": f"{prefix(i)}bias" if layer.bias is not None
                              else None, "formula": "x @ weight.T + bias"})
        elif isinstance(layer, nn.ReLU):
            described.append({"type": "relu"})
        elif isinstance(layer, nn.Dropout):
            described.append({"type": "dropout", "at_inference": "identity"})
        else:
            raise ExportError(f"Cannot describe head layer {type(layer).__name__} for other libraries; "
                              "heads made of Linear, ReLU and Dropout layers can be saved natively.")
    return described
