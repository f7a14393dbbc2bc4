"""The fit path's side of domain adaptation: the target data, paired batches and the domain gap."""

from __future__ import annotations

import logging

import numpy as np

from transferkit import inference
from transferkit.data import LabeledData, load_data
from transferkit.errors import ConfigError, DataError
from transferkit.evaluation.domain_gap import proxy_a_distance
from transferkit.loading import run_batches, source_options
from transferkit.strategies import STRATEGIES
from transferkit.training.features import frozen_features

log = logging.getLogger("transferkit")

#: Samples per domain the proxy A-distance reads (a seeded subsample beyond that), to stay cheap.
GAP_SAMPLES = 400


def check_target_data(config, strategy) -> None:
    """Refuse a domain-adaptation strategy without --target-data, and target data under DDP."""
    if strategy.needs_target_data and not config.target_data:
        raise ConfigError(f"Strategy {config.strategy!r} adapts to an unlabeled target domain: pass --target-data "
                          "(an image folder, a table or demo:<name>, like --data; its labels are not used).")
    if config.target_data and config.devices * config.num_nodes > 1:
        raise ConfigError("--target-data trains on one device (DDP would shard the source batches only); "
                          "drop --devices and --num-nodes, or --target-data.")


def warn_if_unused(config, strategy) -> None:
    if config.target_data and not strategy.needs_target_data:
        adapting = [n for n in STRATEGIES.names() if STRATEGIES.get(n).needs_target_data]
        log.warning("Strategy %r does not train on --target-data %s (the domain-adaptation strategies do: %s); "
                    "it is used only to measure the domain gap.", config.strategy, config.target_data,
                    ", ".join(adapting))


def load_target_data(config, modality: str):
    """Every sample of --target-data as one unlabeled LabeledData (labels, if any, are dropped)."""
    parts = load_data(config.target_data, **source_options(config, require_labels=False, min_classes=1))
    first = next(iter(parts.values()))
    inputs = [item for part in parts.values() for item in part.inputs]
    if not inputs:
        raise DataError(f"--target-data {config.target_data} holds no samples.")
    if first.modality != modality:
        raise DataError(f"--target-data {config.target_data} holds {first.modality} but --data {config.data} holds "
                        f"{modality}; both domains must be the same kind of input.")
    return LabeledData(inputs, None, first.modality, config.task, None, f"{config.target_data} (target domain)")


def gap_samples(source, target, seed: int, limit: int = GAP_SAMPLES):
    """Seeded subsamples of the same size from both domains (chance is then an error of 0.5)."""
    rng = np.random.default_rng(seed)
    n = min(limit, len(source), len(target))
    return tuple(d.subset(np.sort(rng.choice(len(d), n, replace=False))) for d in (source, target))


def current_features(cfg, backbone, data) -> np.ndarray:
    """Features of `data` from `backbone` as it is now (never cached: a trained backbone changes them)."""
    return inference.outputs(backbone, run_batches(cfg, backbone, data, train=False), precision=cfg.precision)


class DomainGap:
    """The proxy A-distance between source training and target samples, before and after training."""

    def __init__(self, plan):
        cfg = plan.config
        self.seed = cfg.seed
        self.samples = gap_samples(plan.splits["train"], plan.target, cfg.seed)
        backbone = plan.model.backbone
        # Pretrained features come from the feature cache; a random init differs per seed, so it is not cached.
        features = ((lambda d, name: frozen_features(cfg, backbone, d, name)) if backbone.pretrained
                    else (lambda d, name: current_features(cfg, backbone, d)))
        self.before = self._distance(*(features(d, f"{name} (domain gap)")
                                       for d, name in zip(self.samples, ("source", "target"))))

    def _distance(self, source: np.ndarray, target: np.ndarray) -> float:
        return round(proxy_a_distance(source, target, seed=self.seed), 4)

    def measure(self, cfg, model) -> dict:
        """metrics.json's `domain_gap`, with the trained `model`'s features for `after`."""
        after = self._distance(*(current_features(cfg, model.backbone, d) for d in self.samples))
        return {"proxy_a_distance_before": self.before, "proxy_a_distance_after": after,
                "samples_per_domain": len(self.samples[0])}
