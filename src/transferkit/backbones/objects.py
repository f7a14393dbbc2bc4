"""Model objects as backbones: a timm model, a transformers encoder (+ its tokenizer), any nn.Module.

`fit(model=obj)` registers the object under a generated name (`object:<kind>-<fingerprint>`)
that the run's config.yaml records. The run folder saves the backbone natively (timm:
backbone.safetensors + its architecture; transformers: encoder/), so `Run.load` rebuilds a timm or
transformers backbone without the object. A plain nn.Module has no library to rebuild it from:
its run loads with `Run.load(folder, model=module)`.
"""

from __future__ import annotations

import copy
import hashlib

import torch
from torch import nn

from transferkit.backbones.base import Backbone, DataSpec, LayerGroup
from transferkit.errors import ConfigError

PREFIX = "object:"


class ModuleBackbone(Backbone):
    """Any nn.Module mapping an image batch (N, 3, H, W) to features (N, num_features).

    Layer groups are its top-level children, in definition order (parameters directly on the
    module form a last group); preprocessing is ImageNet's mean and std at 224x224 unless
    `image_size` is given to fit.
    """

    def __init__(self, name: str, module: nn.Module, num_features: int, pretrained: bool = True):
        super().__init__()
        self.name = name
        self.pretrained = pretrained
        self.module = module
        self.num_features = int(num_features)
        self.data_spec = DataSpec(modality="image", input_size=(224, 224))

    def forward_features(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.module(inputs)
        if features.dim() != 2 or features.shape[1] != self.num_features:
            raise ConfigError(f"The model object returned features of shape {tuple(features.shape)}, not "
                              f"(batch, {self.num_features}); pass the num_features= its forward returns, or "
                              "a module that pools to one vector per input.")
        return features

    def layer_groups(self) -> list[LayerGroup]:
        groups = []
        for child_name, child in self.module.named_children():
            params = {f"module.{child_name}.{n}": p for n, p in child.named_parameters()}
            if params:
                groups.append(LayerGroup(child_name, params))
        direct = {f"module.{n}": p for n, p in self.module.named_parameters(recurse=False)}
        if direct:
            groups.append(LayerGroup("own", direct))
        return groups

    def lora_target_modules(self) -> str:
        return r"^module\..*"


def object_kind(obj) -> str:
    """"timm", "transformers" or "module" (anything else is refused)."""
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], nn.Module):
        return "transformers"
    if not isinstance(obj, nn.Module):
        raise ConfigError(f"model= takes a backbone name, a timm model, a transformers model (with tokenizer=), "
                          f"or an nn.Module with num_features=; got a {type(obj).__name__}.")
    if _is_transformers(obj):
        return "transformers"
    if hasattr(obj, "pretrained_cfg") and hasattr(obj, "reset_classifier") and hasattr(obj, "group_matcher"):
        return "timm"
    return "module"


def _is_transformers(obj) -> bool:
    return any(cls.__module__.startswith("transformers.") and cls.__name__ == "PreTrainedModel"
               for cls in type(obj).__mro__)


def backbone_from_object(obj, *, name: str, tokenizer=None, num_features: int | None = None,
                         max_length: int | None = None) -> Backbone:
    """A Backbone around a copy of `obj` (the caller's object is never changed by training).

    Raises:
        ConfigError: a transformers model without a tokenizer, a plain module without num_features.
    """
    kind = object_kind(obj)
    if kind == "transformers":
        from transferkit.backbones.hf import HFBackbone  # deferred: imports transformers

        encoder, tokenizer = (obj if isinstance(obj, tuple) else (obj, tokenizer))
        if tokenizer is None:
            raise ConfigError("A transformers model needs its tokenizer: pass model=(model, tokenizer) or "
                              "tokenizer=AutoTokenizer.from_pretrained(...).")
        encoder = getattr(encoder, "base_model", encoder)  # a model with a task head: keep its encoder
        return HFBackbone(name, copy.deepcopy(encoder), tokenizer, True, max_length)
    if kind == "timm":
        from transferkit.backbones.timm import TimmBackbone

        model = copy.deepcopy(obj)
        arch = (getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}).get("architecture")
        return TimmBackbone(name, model, True, arch)
    if num_features is None:
        raise ConfigError(f"model= is a {type(obj).__name__}, not a timm or transformers model; pass num_features= "
                          "(the width of the (batch, features) tensor its forward returns).")
    return ModuleBackbone(name, copy.deepcopy(obj), num_features)


def object_name(obj) -> str:
    """`object:<kind>-<architecture or class>-<sha1 of the weights, 10 digits>`."""
    kind = object_kind(obj)
    module = obj[0] if isinstance(obj, tuple) else obj
    digest = hashlib.sha1()
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    label = type(module).__name__
    if kind == "timm":
        label = (getattr(module, "pretrained_cfg", None) or {}).get("architecture") or label
    return f"{PREFIX}{kind}-{label}-{digest.hexdigest()[:10]}"
