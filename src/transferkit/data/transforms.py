"""Image transforms built with timm from a backbone's DataSpec."""

from __future__ import annotations

from timm.data import create_transform

from transferkit.backbones.base import DataSpec
from transferkit.errors import ConfigError, suggest

#: Training augmentation levels: timm train-transform options, or None for the evaluation transform.
AUGMENTATIONS: dict[str, dict | None] = {
    "none": None,
    "light": {"scale": (0.8, 1.0), "hflip": 0.0, "color_jitter": None},
    "standard": {"scale": (0.5, 1.0), "hflip": 0.5},
}


def check_augment(augment: str) -> None:
    """Raise ConfigError for an augmentation name not in AUGMENTATIONS."""
    if augment not in AUGMENTATIONS:
        raise ConfigError(
            f"Unknown augment {augment!r}.{suggest(augment, AUGMENTATIONS)} "
            f"Choose one of: {', '.join(AUGMENTATIONS)}."
        )


def image_size_for(spec: DataSpec, image_size: int | None) -> tuple[int, int]:
    """(H, W) the transform produces: `image_size` squared when given, else the spec's input size."""
    if image_size is not None:
        if int(image_size) != image_size or image_size < 1:
            raise ConfigError(f"image_size must be a positive integer, got {image_size}.")
        return int(image_size), int(image_size)
    if spec.input_size is None:
        raise ConfigError("The backbone's data spec has no input size; pass image_size (--image-size).")
    return int(spec.input_size[0]), int(spec.input_size[1])


def build_image_transform(spec: DataSpec, *, image_size: int | None = None, train: bool = False,
                          augment: str = "none"):
    """Return a callable mapping an RGB PIL image to a normalised float tensor (3, H, W).

    Evaluation resizes the shorter side to size / crop_pct and centre-crops, as timm does (with
    crop_pct 1.0 it resizes straight to the size). Training uses timm's train transform with the
    augmentation level's options, or the evaluation transform for augment "none".

    Args:
        spec: the backbone's data spec (mean, std, interpolation, crop_pct, input_size).
        image_size: square output size; defaults to the spec's input size.
        train: build the training transform.
        augment: "none", "light" (random resized crop, scale 0.8-1, no flip or colour jitter) or
            "standard" (timm's train transform: scale 0.5-1, horizontal flip 0.5, colour jitter).

    Raises:
        ConfigError: unknown augment, or no size given and none in the spec.
    """
    check_augment(augment)
    size = image_size_for(spec, image_size)
    common = {"input_size": (3, *size), "interpolation": spec.interpolation,
              "mean": tuple(spec.mean), "std": tuple(spec.std)}
    options = AUGMENTATIONS[augment]
    if not train or options is None:
        return create_transform(is_training=False, crop_pct=spec.crop_pct, **common)
    return create_transform(is_training=True, **options, **common)
