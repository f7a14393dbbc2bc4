"""The Backbone protocol: pretrained feature extractors with ordered layer groups."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.errors import ExportError, writing
from transferkit.files import follow_umask, temporary_name

#: The file a backbone's weights are saved to by `Backbone.save_native` (timm and transferkit backbones).
NATIVE_WEIGHTS = "backbone.safetensors"


@dataclass(frozen=True)
class DataSpec:
    """How inputs must be prepared for a backbone, derived from its pretrained configuration.

    Attributes:
        modality: "image" or "text".
        input_size: (height, width) the weights were trained at (images).
        mean: per-channel normalisation mean (images).
        std: per-channel normalisation std (images).
        interpolation: resize interpolation name (images).
        crop_pct: centre-crop fraction used at evaluation (images).
        in_chans: number of input channels (images).
        max_length: default token budget (text).
    """

    modality: str
    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    in_chans: int = 3
    max_length: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        d = dict(d)
        for key in ("input_size", "mean", "std"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass
class LayerGroup:
    """A named slice of the backbone, frozen, unfrozen and given a learning rate as one unit."""

    name: str
    named_params: dict[str, nn.Parameter] = field(default_factory=dict)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.named_params.values())


def group_by_prefix(module: nn.Module, assign) -> list[LayerGroup]:
    """Build ordered groups from `assign(param_name) -> (order_key, group_name)`."""
    buckets: dict[tuple, LayerGroup] = {}
    for pname, param in module.named_parameters():
        key, gname = assign(pname)
        buckets.setdefault((key, gname), LayerGroup(gname)).named_params[pname] = param
    return [buckets[k] for k in sorted(buckets, key=lambda k: k[0])]


class Backbone(nn.Module):
    """A pretrained network that maps a batch of inputs to a (batch, num_features) tensor.

    Subclasses set `name`, `num_features`, `data_spec` and implement `forward_features`
    and `layer_groups`. Text backbones also implement `tokenize`.
    """

    name: str = "backbone"
    num_features: int
    data_spec: DataSpec
    pretrained: bool = True
    #: Optional ImageNet/source-task classifier kept for transferability scores (may be None).
    source_classifier: nn.Module | None = None

    def forward_features(self, inputs: Any) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, inputs: Any) -> torch.Tensor:
        return self.forward_features(inputs)

    def layer_groups(self) -> list[LayerGroup]:
        """Groups ordered from input to output (stem, blocks..., last layers); cover every parameter."""
        raise NotImplementedError

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        raise TypeError(f"{self.name} is an image backbone; it does not tokenize text")

    def lora_target_modules(self) -> list[str] | str:
        """Module names (or a regex) that LoRA adapters wrap by default."""
        raise NotImplementedError

    def save_preprocessing(self, folder) -> None:
        """Write what `predict` needs besides weights (a tokenizer for text); images need nothing."""

    def save_native(self, folder) -> dict[str, Any]:
        """Save the backbone as its own library saves it, so that library loads it without transferkit.

        This default serves backbones that only transferkit defines (tiny-cnn): their state dict in
        FOLDER/backbone.safetensors, loaded with `create_backbone(name, pretrained=False)`.

        Returns:
            How to load it and what it outputs (library, file, load, output, num_features, input).
        """
        path = Path(folder) / NATIVE_WEIGHTS
        save_tensors(self.state_dict(), path, {"library": "transferkit", "backbone": self.name})
        return {"library": "transferkit", "file": NATIVE_WEIGHTS,
                "load": f"b = transferkit.create_backbone({self.name!r}, pretrained=False); "
                        f"b.load_state_dict(safetensors.torch.load_file({NATIVE_WEIGHTS!r}), strict=True)",
                **self._native_io("b(pixels) -> features (batch, num_features), b in eval mode")}

    def _native_io(self, output: str) -> dict[str, Any]:
        return {"output": output, "num_features": int(self.num_features), "input": self.data_spec.to_dict()}

    def describe(self) -> dict[str, Any]:
        groups = self.layer_groups()
        return {
            "name": self.name,
            "num_features": self.num_features,
            "total_params": sum(p.numel() for p in self.parameters()),
            "layer_groups": [
                {"name": g.name, "params": sum(p.numel() for p in g.parameters())} for g in groups
            ],
            "data_spec": self.data_spec.to_dict(),
        }


def check_no_adapters(state: dict[str, torch.Tensor]) -> None:
    """Refuse a state dict with PEFT adapter tensors: its own library could not load it.

    Raises:
        ExportError: naming the first adapter tensor.
    """
    adapters = [k for k in state if "lora_" in k or ".base_layer." in k]
    if adapters:
        raise ExportError(f"The backbone still holds PEFT adapters ({adapters[0]}); save the model that "
                          "the strategy's export_model returns (adapters merged) instead.")


def save_tensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a state dict as safetensors (CPU copies, so shared or strided tensors save), atomically.

    Raises:
        ExportError: the state holds PEFT adapter tensors (merge them first: `Strategy.export_model`).
    """
    from safetensors.torch import save_file

    check_no_adapters(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
    tmp = temporary_name(path)
    try:
        with writing(path):
            save_file(tensors, str(tmp), metadata=metadata)
            follow_umask(tmp)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
