"""Train/val/test splits: deterministic, stratified, respecting predefined parts."""

from __future__ import annotations

import logging

import numpy as np

from transferkit.data.dataset import LabeledData
from transferkit.data.leakage import LeakageReport, check_leakage
from transferkit.errors import ConfigError, DataError

logger = logging.getLogger("transferkit")

SPLITS = ("train", "val", "test")
_POOLS = ("all", "train")


class Splits(dict):
    """{"train", "val", "test"} -> LabeledData, plus what was found while making them.

    Attributes:
        leakage: {"val" | "test": LeakageReport} for each non-empty held-out split (count 0 when clean).
        warnings: the warnings logged while splitting (an empty or shrunken val split, leakage), in order.
    """

    def __init__(self, parts: dict[str, LabeledData], leakage: dict[str, LeakageReport], warnings: list[str]):
        super().__init__(parts)
        self.leakage = leakage
        self.warnings = warnings

    def leakage_dict(self) -> dict:
        """{"val": {...}, "test": {...}} in JSON-ready form, for metrics.json."""
        return {name: report.to_dict() for name, report in self.leakage.items()}


def align_classes(data: LabeledData, classes: list[str]) -> LabeledData:
    """Re-index classification data onto `classes` (the training classes).

    Unlabeled data gets the class list with targets left None; regression data is returned unchanged.

    Raises:
        DataError: a label of `data` that is not among `classes`, listing it and the known classes.
    """
    if data.task != "classification":
        return data
    if data.targets is None:
        return LabeledData(data.inputs, None, data.modality, data.task, list(classes), data.name)
    index = {name: i for i, name in enumerate(classes)}
    counts = data.class_counts()
    unknown = [name for name, n in counts.items() if n and name not in index]
    if unknown:
        raise DataError(
            f"{data.name} has labels that are not among the training classes: "
            f"{', '.join(f'{u!r} ({counts[u]} samples)' for u in unknown)}; known classes: "
            f"{', '.join(repr(c) for c in classes)}. Relabel or remove those samples."
        )
    mapping = np.array([index.get(name, -1) for name in data.classes], dtype=np.int64)
    return LabeledData(data.inputs, mapping[data.targets], data.modality, data.task, list(classes), data.name)


def make_splits(
    parts: dict[str, LabeledData],
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    train_per_class: int | None = None,
    test_data: LabeledData | None = None,
    leakage: bool = True,
) -> Splits:
    """Return {"train", "val", "test"}, carving only the parts that were not predefined.

    Val and test are carved out of "all" (or "train") as fractions of its size, stratified by
    class for classification (every class keeps at least one training sample) and shuffled
    for regression. The same data and seed always give the same split.

    Args:
        parts: output of `load_data`: {"all": ...} or predefined "train" / "val" / "test" parts.
        val_fraction: share of the pool carved out as "val" when no "val" part is given.
        test_fraction: share carved out as "test" when neither a "test" part nor `test_data` is given.
        seed: seed of the carving and of the `train_per_class` choice.
        train_per_class: keep this many training samples per class (after carving val and test);
            for a fixed seed a smaller N keeps a subset of what a larger N keeps.
        test_data: a separate held-out set used as "test" (re-indexed onto the training classes).
        leakage: count val and test items identical by content to training items
            (`transferkit.data.leakage`), warn when there are any, and keep the reports.

    Returns:
        A `Splits` dict; its `leakage` and `warnings` say what was found.

    An empty val split (too few samples for `val_fraction`, or classes too small to give one) is a
    warning saying why: the run still trains, without early stopping or a best-epoch choice. An
    empty test split when `test_fraction` > 0 is an error: the run could not report the test
    scores that were asked for.

    Raises:
        ConfigError: fractions outside [0, 1) or summing to 1 or more; `train_per_class` below 1
            or used for regression; parts without "all" or "train".
        DataError: classes with no training sample, or fewer than `train_per_class` of them; a
            test split that comes out empty although test data was asked for.
    """
    _check_fractions(val_fraction, test_fraction)
    pool_key = _pool_key(parts)
    pool = parts[pool_key]
    if pool.targets is None:
        raise DataError(f"{pool.name} is unlabeled; training splits need labels.")
    given = {k: v for k, v in parts.items() if k in ("val", "test")}
    if test_data is not None:
        given["test"] = test_data
    fractions = {name: frac for name, frac in (("test", test_fraction), ("val", val_fraction)) if name not in given}
    rng = np.random.default_rng(seed)
    carved = _carve(pool, fractions, rng)
    train = carved.pop("train")
    if train_per_class is not None:
        train = _per_class(train, train_per_class, rng)
    _check_train_classes(train)
    splits = {"train": train}
    for name in ("val", "test"):
        part = given[name] if name in given else carved[name]
        splits[name] = _aligned(part, pool)
    notes = _check_sizes(splits, pool, {**fractions, **{k: None for k in given}})
    reports = check_leakage(splits) if leakage else {}
    notes += [report.message() for report in reports.values() if report.count]
    return Splits(splits, reports, notes)


def _check_sizes(splits: dict[str, LabeledData], pool: LabeledData, asked: dict[str, float | None]) -> list[str]:
    """Refuse an empty test split that was asked for; warn about an empty or shrunken val split."""
    notes = []
    for name in ("test", "val"):
        fraction, got = asked[name], len(splits[name])
        if fraction == 0:
            continue
        wanted = len(pool) if fraction is None else int(round(fraction * len(pool)))
        if got == 0:
            why = _why_empty(name, fraction, pool, wanted)
            if name == "test":
                raise DataError(f"The test split is empty: {why}; raise --test-fraction, give --test-data, "
                                "or set --test-fraction 0 to train without a test split.")
            notes.append(f"The val split is empty: {why}; training runs without validation (no early stopping, "
                         "no best-epoch choice, no val scores). Raise --val-fraction or add data.")
        elif fraction is not None and got < wanted:
            notes.append(f"The {name} split has {got} items where {name}_fraction {fraction} of {len(pool)} asks "
                         f"for {wanted}: every class keeps at least one sample for training.")
    for note in notes:
        logger.warning(note)
    return notes


def _why_empty(name: str, fraction: float | None, pool: LabeledData, wanted: int) -> str:
    if fraction is None:
        return f"the given {name} data has no items"
    if wanted == 0:
        return f"{name}_fraction {fraction} of {len(pool)} samples rounds to 0 items"
    return "every class has a single sample, which stays in training (at least 2 per class are needed)"


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must lie in [0, 1), got {value}.")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must stay below 1 to leave training data, got "
            f"{val_fraction} + {test_fraction}."
        )


def _pool_key(parts: dict[str, LabeledData]) -> str:
    unknown = sorted(set(parts) - set(SPLITS) - {"all"})
    if unknown:
        raise ConfigError(f"Unknown data parts {unknown}; use 'all' or 'train', 'val', 'test'.")
    keys = [k for k in _POOLS if k in parts]
    if len(keys) != 1:
        raise ConfigError(
            f"Splits need exactly one of 'all' or 'train' among the parts, got {sorted(parts)}; "
            "a folder with only val/ or test/ cannot be trained on."
        )
    return keys[0]


def _aligned(part: LabeledData, pool: LabeledData) -> LabeledData:
    if (part.modality, part.task) != (pool.modality, pool.task):
        raise DataError(
            f"{part.name} is {part.modality} {part.task} data but {pool.name} is {pool.modality} {pool.task} data; "
            "val and test data must match the training data."
        )
    return align_classes(part, pool.classes) if pool.task == "classification" else part


def _carve(pool: LabeledData, fractions: dict[str, float], rng: np.random.Generator) -> dict[str, LabeledData]:
    n = len(pool)
    sizes = {name: int(round(frac * n)) for name, frac in fractions.items()}
    if pool.task == "classification":
        groups = _class_groups(pool.targets, len(pool.classes), rng)
        taken = {name: _stratified_take(groups, size) for name, size in sizes.items()}
    else:
        order = list(rng.permutation(n))
        if sum(sizes.values()) >= n:
            raise DataError(f"{pool.name} has {n} samples, too few to carve val/test and keep training data.")
        taken = {name: [order.pop() for _ in range(size)] for name, size in sizes.items()}
        groups = [order]
    taken["train"] = [i for group in groups for i in group]
    return {name: pool.subset(np.sort(np.asarray(idx, dtype=np.int64))) for name, idx in taken.items()}


def _class_groups(targets: np.ndarray, num_classes: int, rng: np.random.Generator) -> list[list[int]]:
    """Indices of each class in a seeded random order (one list per class, in class order)."""
    return [list(rng.permutation(np.flatnonzero(targets == c))) for c in range(num_classes)]


def _stratified_take(groups: list[list[int]], size: int) -> list[int]:
    """Pop `size` indices spread over classes in proportion to their size, leaving each class one.

    Quotas use the largest-remainder method; classes too small to give their share give what they can.
    """
    spare = np.array([max(len(g) - 1, 0) for g in groups], dtype=np.int64)
    total = sum(len(g) for g in groups)
    size = min(size, int(spare.sum()))
    if size == 0 or total == 0:
        return []
    exact = np.array([len(g) for g in groups], dtype=np.float64) * size / total
    quota = np.minimum(np.floor(exact).astype(np.int64), spare)
    for c in np.argsort(-(exact - quota), kind="stable"):
        if quota.sum() >= size:
            break
        if quota[c] < spare[c]:
            quota[c] += 1
    while quota.sum() < size:
        c = int(np.argmax(spare - quota))
        quota[c] += 1
    return [groups[c].pop() for c in range(len(groups)) for _ in range(quota[c])]


def _per_class(train: LabeledData, n: int, rng: np.random.Generator) -> LabeledData:
    if train.task != "classification":
        raise ConfigError("train_per_class applies to classification only; drop it for regression.")
    if int(n) != n or n < 1:
        raise ConfigError(f"train_per_class must be a positive integer, got {n}.")
    counts = train.class_counts()
    short = {name: count for name, count in counts.items() if count < n}
    if short:
        name, count = min(short.items(), key=lambda item: item[1])
        raise DataError(
            f"train_per_class={n} but class {name!r} has only {count} training samples after carving val/test; "
            f"lower --train-per-class to at most {count} or lower the val/test fractions."
        )
    # One permutation per class: a smaller n keeps a prefix of what a larger n keeps.
    keep = [i for c in range(len(train.classes)) for i in rng.permutation(np.flatnonzero(train.targets == c))[:n]]
    return train.subset(np.sort(np.asarray(keep, dtype=np.int64)))


def _check_train_classes(train: LabeledData) -> None:
    if train.task != "classification":
        if len(train) == 0:
            raise DataError(f"{train.name} leaves no training samples; lower the val/test fractions.")
        return
    empty = [name for name, count in train.class_counts().items() if count == 0]
    if empty:
        raise DataError(
            f"Classes without any training sample in {train.name}: {', '.join(repr(c) for c in empty)}; "
            "add training images for them or remove them from val/test."
        )
