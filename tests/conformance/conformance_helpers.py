"""Helpers of the strategy conformance suite: tiny models, synthetic batches, short trainings.

Everything runs on CPU with the registered tiny backbones; a backbone is built once per session
and deep-copied per test, so a test never sees another test's weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from transferkit.backbones import create_backbone
from transferkit.config import RunConfig
from transferkit.data import LabeledData
from transferkit.strategies import STRATEGIES, create_strategy
from transferkit.strategies.base import ChoiceContext
from transferkit.model import TransferModel, make_head

STRATEGY_NAMES = STRATEGIES.names()
BACKBONE_NAMES = ["tiny-cnn", "tiny-text"]
N_CLASSES = 3

#: Options that give each built-in strategy a schedule with something to test (a frozen group,
#: a warm-up epoch, several unfreezing steps). A newly registered strategy runs with its defaults.
SCHEDULE_OPTIONS: dict[str, dict] = {
    "partial": {"freeze": 1},
    "gradual": {"unfreeze_every": 1},
    "full": {"head_warmup": 1},
    "l2sp": {"head_warmup": 1},
    "dann": {"head_warmup": 1},
    "coral": {"head_warmup": 1},
    "mmd": {"head_warmup": 1},
}

#: Epochs of the short trainings: long enough for gradual to unfreeze two of three groups.
EPOCHS = 3

TEXTS = ["a good film", "bad plot and worse acting", "the cat sat on the mat", "no",
         "an excellent, moving story", "dull", "I would watch it again tomorrow", "meh at best"]


def strategy_for(name: str, **overrides):
    """Strategy `name` with its conformance schedule options (probe init off: no data here).

    A strategy that only chooses another from the data (`auto`) never trains itself: it is resolved
    on `synthetic_context()` first, and the strategy it picks is held to the contracts.
    """
    cls = STRATEGIES.get(name)
    if cls.chooses_from_data:
        choice = create_strategy(name, overrides).choose(synthetic_context())
        return strategy_for(choice.strategy, **choice.options)
    options = {**SCHEDULE_OPTIONS.get(name, {}), **overrides}
    if "probe_init" in cls.config_class.__dataclass_fields__:
        options.setdefault("probe_init", False)
    return create_strategy(name, options)


@lru_cache(maxsize=None)
def _pristine_backbone(name: str, pretrained: bool):
    with torch.random.fork_rng():
        torch.manual_seed(0)  # scratch backbones draw from the global RNG
        return create_backbone(name, pretrained=pretrained)


def make_model(backbone: str, *, pretrained: bool = True, n_classes: int = N_CLASSES) -> TransferModel:
    """A fresh TransferModel (backbone + linear head with a seeded init)."""
    bb = copy.deepcopy(_pristine_backbone(backbone, pretrained))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        head = make_head("linear", bb.num_features, n_classes)
    return TransferModel(bb, head)


def make_batches(backbone: str, *, n_batches: int = 2, batch_size: int = 4, seed: int = 0,
                 target_domain: bool = False) -> list:
    """(inputs, targets, index) batches shaped like the data loaders', for the given backbone.

    `target_domain`: append the inputs of an unlabeled target-domain batch, drawn differently from the
    source inputs, as `SourceTargetLoader` does for the strategies that need target data.
    """
    gen = torch.Generator().manual_seed(seed)
    bb = _pristine_backbone(backbone, True)
    batches = []
    for b in range(n_batches):
        targets = torch.randint(0, N_CLASSES, (batch_size,), generator=gen)
        index = torch.arange(b * batch_size, (b + 1) * batch_size)
        batch = (_inputs(bb, batch_size, gen), targets, index)
        if target_domain:
            batch = (*batch, _inputs(bb, batch_size, gen, shift=2.0))
        batches.append(batch)
    return batches


def _inputs(bb, batch_size: int, gen: torch.Generator, shift: float = 0.0):
    if bb.data_spec.modality == "text":
        picks = torch.randint(0, len(TEXTS), (batch_size,), generator=gen).tolist()
        texts = [TEXTS[i] for i in picks]
        return bb.tokenize([t.upper() for t in texts] if shift else texts)
    return torch.randn(batch_size, 3, 16, 16, generator=gen) * 2 + 1 + shift  # far from BN's init stats


def _trainable_recorder(seen: set[str]):
    """A Lightning callback adding the names of the parameters trainable at each step to `seen`."""
    import lightning as L

    class RecordTrainable(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.update(n for n, p in pl_module.model.named_parameters() if p.requires_grad)

    return RecordTrainable()


@dataclass
class Trained:
    """A short training through TransferModule under a real Lightning Trainer."""

    model: TransferModel
    strategy: object
    params_before: dict[str, torch.Tensor]
    buffers_before: dict[str, torch.Tensor]
    ever_trainable: set[str]
    inputs: object


def train_briefly(model, strategy, batches, *, epochs: int = EPOCHS, lr: float = 1e-2,
                  start_mode: str = "train") -> Trained:
    """Prepare `model` with `strategy` and train it for `epochs` through the one training path.

    `start_mode` is the mode the model is in when `Trainer.fit` starts: "train" is a freshly built
    model; "eval" is what a linear-probe feature pass leaves behind.
    """
    import lightning as L
    from torch.utils.data import DataLoader

    from transferkit.training.module import TransferModule

    strategy.prepare(model)
    params_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers_before = {n: b.detach().clone() for n, b in model.named_buffers()}
    if start_mode == "eval":
        model.eval()
    else:
        torch.nn.Module.train(model)  # a fresh module's state, without TransferModel's BatchNorm rule
    ever_trainable: set[str] = set()
    module = TransferModule(model, strategy, task="classification", lr=lr, weight_decay=0.01,
                            total_steps=epochs * len(batches))
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[_trainable_recorder(ever_trainable)])
    trainer.fit(module, DataLoader(batches, batch_size=None))
    return Trained(model, strategy, params_before, buffers_before, ever_trainable, batches[0][0])


def write_image_folder(root: Path, per_class: int = 8, classes=("circle", "square"), size: int = 16) -> Path:
    """Class subfolders of noisy PNGs whose brightness depends on the class."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(60 + 120 * c, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def synthetic_context(per_class: int = 20, dims: int = 16, seed: int = 0) -> ChoiceContext:
    """What `Strategy.resolve` reads, for tiny-cnn: N_CLASSES classes, `per_class` labels each, random features."""
    targets = np.repeat(np.arange(N_CLASSES), per_class)
    images = [np.zeros((16, 16), dtype=np.uint8)] * len(targets)
    train = LabeledData(images, targets, "image", "classification", [str(c) for c in range(N_CLASSES)], "synthetic")
    features = np.random.default_rng(seed).normal(size=(len(targets), dims))
    splits = {"train": train, "val": train.subset([]), "test": train.subset([])}
    return ChoiceContext(RunConfig(data="synthetic", model="tiny-cnn"), splits, _pristine_backbone("tiny-cnn", True),
                          features=lambda split: features, step_seconds=lambda: 1e-3)


def fit_options(image_folder: Path, strategy: str, out: Path, **overrides) -> dict:
    """Options of a fast `transferkit.fit` on the tiny CNN (12 train, 4 test images).

    No validation split by default: with one, `checkpoints/last.ckpt` is only rewritten when the
    monitored metric improves (see `test_last_checkpoint_is_the_last_epoch_with_validation`).
    """
    options = dict(data=str(image_folder), model="tiny-cnn", strategy=strategy, out=str(out), image_size=16,
                   epochs=EPOCHS, batch_size=4, lr=1e-2, val_fraction=0.0, test_fraction=0.25)
    options.update(SCHEDULE_OPTIONS.get(strategy, {}))
    if STRATEGIES.get(strategy).needs_target_data:
        options["target_data"] = str(image_folder)  # its labels are ignored: unlabeled target data
    if STRATEGIES.get(strategy).uses_cached_features or STRATEGIES.get(strategy).chooses_from_data:
        options["head"] = "linear"  # a neural head trains through Lightning, so it has checkpoints
    options.update(overrides)
    return options
