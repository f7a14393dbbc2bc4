"""How a run reads data: the keyword arguments of `load_data` and of `make_loader`, built here only."""

from __future__ import annotations

from typing import Any

from transferkit.config import RunConfig
from transferkit.data import make_loader


def source_options(config: RunConfig, **overrides: Any) -> dict[str, Any]:
    """`load_data` keywords of a run (task and column names), with `overrides` on top."""
    options = dict(task=config.task, text_column=config.text_column, image_column=config.image_column,
                   label_column=config.label_column, skip_bad_files=config.skip_bad_files)
    options.update(overrides)
    return options


def batches(backbone, data, *, image_size: int | None, max_length: int | None, batch_size: int = 64,
            train: bool = False, augment: str = "none", num_workers: int = 0, seed: int = 0):
    """Batches of `data` prepared for `backbone` (augmented only when `train`)."""
    tokenize = backbone.tokenize if backbone.data_spec.modality == "text" else None
    return make_loader(data, spec=backbone.data_spec, tokenize=tokenize, image_size=image_size,
                       batch_size=batch_size, train=train, augment=augment if train else "none",
                       max_length=max_length, num_workers=num_workers, seed=seed)


def run_batches(config: RunConfig, backbone, data, *, train: bool):
    """Batches of `data` for `backbone` as the run `config` says."""
    return batches(backbone, data, image_size=config.image_size, max_length=config.max_length,
                   batch_size=config.batch_size, train=train, augment=config.augment,
                   num_workers=config.num_workers, seed=config.seed)
