"""The one inference loop: a module over batches in eval mode, without gradients.

Frozen features for the cache, a run's predictions, evaluation of a split and the domain gap all
run through `forward` (one batch) and `batch_outputs` (every batch); the DDP feature extraction
calls `forward` from Lightning's predict loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from transferkit.model import TargetScaling


def autocast(precision: str):
    """bf16 autocast on CPU (or CUDA) when asked; a no-op context otherwise."""
    if precision == "bf16":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return nullcontext()


def use_channels_last(module: torch.nn.Module, enable: bool = True) -> bool:
    """Put a convnet's weights in channels-last (NHWC) layout, or back with `enable=False`.

    oneDNN's CPU kernels (and cuDNN's with mixed precision) run convolutions faster on NHWC: about
    1.2x in fp32 and 1.5x with bf16 for EfficientNet-Lite0 at 64x64 here. Callers put the weights
    back when done, so every process of a DDP run wraps the same layout.

    Returns:
        True when the module has 2-D convolutions (and was converted).
    """
    if not any(isinstance(m, torch.nn.Conv2d) for m in module.modules()):
        return False
    layout = torch.channels_last if enable else torch.contiguous_format
    with torch.inference_mode(False), torch.no_grad():  # inference-mode weights could not train afterwards
        module.to(memory_format=layout)
    return True


@contextmanager
def channels_last(module: torch.nn.Module):
    """Within the block the module's weights are NHWC (yields whether it is a convnet); then as before."""
    nhwc = use_channels_last(module)
    try:
        yield nhwc
    finally:
        if nhwc:
            use_channels_last(module, enable=False)


def channels_last_inputs(inputs):
    """Image batches (N, C, H, W) in channels-last layout; anything else unchanged."""
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def to_device(inputs, device: str):
    if isinstance(inputs, dict):
        return {k: v.to(device) for k, v in inputs.items()}
    return inputs.to(device)


def forward(module: torch.nn.Module, inputs, *, nhwc: bool, precision: str) -> torch.Tensor:
    """One batch through `module`, as float32 (the same computation in every process)."""
    inputs = channels_last_inputs(inputs) if nhwc else inputs
    with autocast(precision):
        return module(inputs).float()


@torch.inference_mode()
def batch_outputs(module: torch.nn.Module, loader, *, precision: str = "32",
                  device: str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(outputs on the CPU, sample indices) of each batch of `loader` ((inputs, targets, index) batches)."""
    module.eval().to(device)
    with channels_last(module) as nhwc:
        for inputs, _, index in loader:
            yield forward(module, to_device(inputs, device), nhwc=nhwc, precision=precision).cpu(), index


def outputs(module: torch.nn.Module, loader, *, precision: str = "32") -> np.ndarray:
    """Every batch's outputs, in loader order: features of a backbone, logits of a model."""
    return np.concatenate([out.numpy() for out, _ in batch_outputs(module, loader, precision=precision)])


def predictions(logits: np.ndarray, task: str, scaling: TargetScaling) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, scores): class indices and probabilities, or regression values (twice, as a column)."""
    logits = torch.as_tensor(np.asarray(logits))
    if task == "classification":
        probs = logits.softmax(-1)
        return probs.argmax(-1).numpy(), probs.numpy()
    values = scaling.restore(logits.squeeze(-1).numpy())
    return values, values[:, None]


def predict(model, loader, *, task: str, scaling: TargetScaling,
            precision: str = "32") -> tuple[np.ndarray, np.ndarray]:
    """(predictions, scores) of a TransferModel over `loader`."""
    return predictions(outputs(model, loader, precision=precision), task, scaling)
