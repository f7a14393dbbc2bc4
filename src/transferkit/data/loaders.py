"""DataLoaders yielding (inputs, targets, index) batches for image and text data."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from transferkit.backbones.base import DataSpec
from transferkit.data.dataset import LabeledData
from transferkit.data.images import open_image
from transferkit.data.transforms import build_image_transform, check_augment
from transferkit.errors import ConfigError, DataError

Tokenize = Callable[..., dict]


class _ItemDataset(Dataset):
    """Items (transformed image or raw text) with their dataset index; targets are attached in collate."""

    def __init__(self, inputs: list, transform: Callable | None):
        self.inputs = inputs
        self.transform = transform

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        item = self.inputs[index]
        if self.transform is not None:
            item = self.transform(open_image(item))
        return item, index


class SeededShuffle(RandomSampler):
    """A random order that is a function of (seed, stream, epoch, pass), not of what ran before.

    Lightning calls `set_epoch` at the start of every epoch (as it does for `DistributedSampler`),
    so a run resumed at epoch e sees the same batches as one that never stopped. Without
    `set_epoch`, each new pass over the data draws a new order. Subclassing `RandomSampler` keeps
    Lightning's DDP handling: under several processes it is replaced by a shuffling
    `DistributedSampler`.
    """

    def __init__(self, data_source, seed: int = 0, stream: int = 0):
        super().__init__(data_source)
        self.seed, self.stream = int(seed), int(stream)
        self.epoch, self.passes = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.passes = int(epoch), 0

    def __iter__(self):
        key = np.random.SeedSequence([self.seed, self.stream, self.epoch, self.passes]).generate_state(2)
        generator = torch.Generator().manual_seed(int(key[0]) << 32 | int(key[1]))
        self.passes += 1
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class _Collate:
    """Stack images or tokenize texts, and look targets up by index (a class, so workers can pickle it)."""

    def __init__(self, targets: torch.Tensor, tokenize: Tokenize | None, max_length: int | None):
        self.targets = targets
        self.tokenize = tokenize
        self.max_length = max_length

    def __call__(self, batch):
        items, indices = zip(*batch)
        index = torch.tensor(indices, dtype=torch.long)
        if self.tokenize is None:
            inputs = torch.stack(items)
        else:
            inputs = self.tokenize(list(items), self.max_length)
        return inputs, self.targets[index], index


def _targets_tensor(data: LabeledData) -> torch.Tensor:
    if data.targets is None:
        return torch.full((len(data),), -1, dtype=torch.long)
    dtype = torch.long if data.task == "classification" else torch.float32
    return torch.as_tensor(data.targets, dtype=dtype)


def _check(data: LabeledData, spec: DataSpec, tokenize, batch_size: int, augment: str) -> None:
    check_augment(augment)
    if data.modality != spec.modality:
        raise ConfigError(
            f"{data.name} is {data.modality} data but the backbone takes {spec.modality} inputs; "
            f"choose a {data.modality} backbone."
        )
    if data.modality == "text" and tokenize is None:
        raise ConfigError("Text data needs a tokenize callable (the backbone's tokenize method).")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}.")


def make_loader(
    data: LabeledData,
    *,
    spec: DataSpec,
    tokenize: Tokenize | None = None,
    image_size: int | None = None,
    batch_size: int = 32,
    train: bool = False,
    augment: str = "none",
    max_length: int | None = None,
    num_workers: int = 0,
    seed: int = 0,
) -> DataLoader:
    """Return a DataLoader of (inputs, targets, index) batches.

    Images become a float tensor (B, 3, S, S) through `build_image_transform`; texts become the
    dict that `tokenize(texts, max_length)` returns. Targets are long (classification) or float
    (regression), and -1 (long) for unlabeled data. Index holds the dataset positions, for
    looking up cached features.

    Args:
        data: the data to iterate.
        spec: the backbone's data spec.
        tokenize: `backbone.tokenize`, required for text.
        image_size: square image size; defaults to the spec's input size.
        batch_size: items per batch; the last batch may be smaller (nothing is dropped).
        train: shuffle (in a `SeededShuffle` order of `seed` and the epoch) and apply `augment`.
        augment: "none", "light" or "standard"; see `build_image_transform`.
        max_length: token budget for text; defaults to the spec's max_length.
        num_workers: worker processes for loading.
        seed: shuffling seed.

    Raises:
        ConfigError: modality mismatch, text without tokenize, bad batch size or augment.
    """
    _check(data, spec, tokenize, batch_size, augment)
    transform = None
    if data.modality == "image":
        transform = build_image_transform(spec, image_size=image_size, train=train, augment=augment)
        tokenize = None
    collate = _Collate(_targets_tensor(data), tokenize, max_length or spec.max_length)
    dataset = _ItemDataset(data.inputs, transform)
    return DataLoader(
        dataset, batch_size=int(batch_size), sampler=SeededShuffle(dataset, seed) if train else None,
        drop_last=False, num_workers=num_workers, collate_fn=collate,
        persistent_workers=num_workers > 0,
    )


class SourceTargetLoader:
    """Source batches, each with the inputs of an unlabeled target-domain batch appended.

    Yields (inputs, targets, index, target_inputs). An epoch is one pass over `source`; `target`
    starts a fresh shuffled pass at every epoch and cycles within it, so a small target set repeats
    within an epoch. With `SeededShuffle` samplers both orders depend only on the seed and the
    epoch, which Lightning passes to `set_epoch` (found through `sampler`), so a resumed run draws
    the same source and target batches as an uninterrupted one.
    """

    def __init__(self, source: DataLoader, target: DataLoader):
        self.source = source
        self.target = target
        self._target_batches = None
        if isinstance(target.sampler, SeededShuffle):
            target.sampler.stream = 1  # the same seed must not give source and target the same order

    @property
    def sampler(self):
        """Itself: Lightning looks for `loader.sampler.set_epoch` at the start of each epoch."""
        return self

    def set_epoch(self, epoch: int) -> None:
        for loader in (self.source, self.target):
            if callable(getattr(loader.sampler, "set_epoch", None)):
                loader.sampler.set_epoch(epoch)
        self._target_batches = None

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self):
        for batch in self.source:
            yield (*batch, self._next_target_inputs())

    def _next_target_inputs(self):
        for _ in range(2):
            if self._target_batches is None:
                self._target_batches = iter(self.target)
            try:
                return next(self._target_batches)[0]
            except StopIteration:
                self._target_batches = None
        raise DataError("The target-domain data is empty; give --target-data with at least one sample.")
