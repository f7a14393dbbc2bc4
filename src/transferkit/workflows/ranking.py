"""`rank`: score candidate backbones on the user's labeled data from their frozen features alone.

    ranking = transferkit.rank("demo:mnist", ["efficientnet_lite0", "efficientnet_lite1"],
                               train_per_class=50, image_size=64, control=True)
    ranking.rows[0]["model"]; ranking.print_table()
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import torch

from transferkit.backbones import create_backbone
from transferkit.config import RunConfig, atomic_write_text
from transferkit.errors import ConfigError
from transferkit.training.features import frozen_features
from transferkit.training.plan import load_splits
from transferkit.transferability.scores import SCORES
from transferkit.workflows.ranking_check import RANDOM_SUFFIX, run_folder_name, validate_ranking
from transferkit.workflows.ranking_tables import correlation_table, ranking_table, timing_table



@dataclass
class Ranking:
    """Candidates scored on one data set, best first by `sort_by`.

    Attributes:
        rows: one dict per candidate: model, pretrained, samples, features, each score (None where
            it does not apply), `features_s` and `<score>_s` seconds, and with validation `accuracy`.
        sort_by: the score the rows are sorted by (higher is better).
        scores: the scores computed, in column order.
        correlations: with validation, {score: {"kendall_tau", "p_value", "n"}}.
        folder: where ranking.csv (and ranking.json) were written, if anywhere.
    """

    rows: list[dict[str, Any]]
    sort_by: str
    scores: list[str]
    correlations: dict[str, dict[str, Any]] = field(default_factory=dict)
    folder: Path | None = None

    def frame(self):
        import pandas as pd  # deferred: pandas is slow to import

        return pd.DataFrame(self.rows)

    def print_table(self) -> None:
        from rich.console import Console  # deferred: only printing needs rich

        console = Console()
        console.print(ranking_table(self))
        console.print(timing_table(self))
        if self.correlations:
            console.print(correlation_table(self))


def rank(data: str, models: Sequence[str] | str, *, scores: Sequence[str] | str | None = None,
         sort_by: str = "logme", control: bool = False, validate: bool = False,
         validate_strategy: str = "full", validate_epochs: int = 3, out: str | Path | None = None,
         progress: bool = True, **options: Any) -> Ranking:
    """Score each candidate backbone on the training split of `data`, best first.

    Features come from the feature cache (computed on a miss), so ranking again, or fitting
    feature extraction afterwards, costs no second backbone pass.

    Args:
        data: what `fit` takes as `data` (demo name, image folder, table).
        models: backbone names, or one comma-separated string; `<name>@random` is a random init.
        scores: registered score names (default: all; see `list_scores()`).
        sort_by: the score to sort by.
        control: add a randomly initialised copy of the first model (`<model>@random`).
        validate: fine-tune each candidate briefly with `validate_strategy` (random copies: from
            scratch) and report Kendall's tau between each score and the test accuracy.
        validate_strategy: the strategy of those fine-tunings.
        validate_epochs: their epochs.
        out: folder for ranking.csv, ranking.json and the validation runs (None: write nothing).
        progress: print the table (and the fitting progress).
        **options: RunConfig fields for data and preprocessing, e.g. train_per_class=50,
            image_size=64, max_length=64, seed=0, text_column="review".
    """
    candidates = _candidates(models, control)
    names = _score_names(scores, sort_by)
    config = _base_config(data, candidates[0], options)
    if validate and out is None:
        raise ConfigError("--validate fine-tunes every candidate into run folders; pass --out DIR.")
    splits = load_splits(config)
    if config.task != "classification":
        raise ConfigError("rank scores classification data; its scores compare class labels (drop --task regression).")
    rows = [score_candidate(config, name, splits["train"], names) for name in candidates]
    rows.sort(key=lambda row: -np.inf if row[sort_by] is None else row[sort_by], reverse=True)
    ranking = Ranking(rows, sort_by, names, folder=Path(out) if out is not None else None)
    if validate:
        validate_ranking(ranking, data, options, strategy=validate_strategy, epochs=validate_epochs,
                         progress=progress)
    if out is not None:
        write_ranking(ranking)
    if progress:
        ranking.print_table()
    return ranking


def score_candidate(config: RunConfig, name: str, train, names: list[str]) -> dict[str, Any]:
    """Features of `train` from candidate `name`, and each score with the seconds it took."""
    backbone = candidate_backbone(config, name, train.modality)
    start = time.perf_counter()
    features = frozen_features(config, backbone, train, name)
    row: dict[str, Any] = {"model": name, "pretrained": backbone.pretrained, "samples": len(train),
                           "features": int(features.shape[1]), "features_s": round(time.perf_counter() - start, 3)}
    inputs, source_s = {"features": features}, 0.0
    if any(SCORES.get(n).reads == "source_probs" for n in names) and backbone.source_classifier is not None:
        start = time.perf_counter()
        inputs["source_probs"] = source_probabilities(backbone.source_classifier, features)
        source_s = time.perf_counter() - start
    for score in names:
        entry = SCORES.get(score)
        if entry.reads not in inputs:
            row[score], row[f"{score}_s"] = None, None
            continue
        start = time.perf_counter()
        row[score] = float(entry.fn(inputs[entry.reads], train.targets))
        row[f"{score}_s"] = round(time.perf_counter() - start + (source_s if entry.reads != "features" else 0), 3)
    return row


def candidate_backbone(config: RunConfig, name: str, modality: str):
    """Backbone `name`, pretrained unless it ends in @random (then seeded with the run's seed)."""
    base = name.removesuffix(RANDOM_SUFFIX)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        backbone = create_backbone(base, pretrained=base == name, weights=config.weights,
                                   max_length=config.max_length)
    if backbone.data_spec.modality != modality:
        raise ConfigError(f"Backbone {base!r} reads {backbone.data_spec.modality} but {config.data} holds "
                          f"{modality}; rank {modality} backbones only (see `transferkit models`).")
    return backbone


def source_probabilities(classifier, features: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Softmax of the backbone's source (e.g. ImageNet) classifier applied to its pooled features."""
    parts = []
    with torch.inference_mode():
        for i in range(0, len(features), batch):
            chunk = torch.from_numpy(np.array(features[i:i + batch], dtype=np.float32))  # a copy: the cache is read-only
            parts.append(classifier.float()(chunk).softmax(-1).double().numpy())
    return np.concatenate(parts)


def write_ranking(ranking: Ranking) -> None:
    """ranking.csv (one row per candidate) and ranking.json (rows, settings, correlations), atomically."""
    folder = ranking.folder
    atomic_write_text(folder / "ranking.csv", ranking.frame().to_csv(index=False))
    payload = {"sort_by": ranking.sort_by, "scores": ranking.scores, "rows": ranking.rows,
               "correlations": ranking.correlations}
    atomic_write_text(folder / "ranking.json", json.dumps(payload, indent=2, default=float))


def _candidates(models: Sequence[str] | str, control: bool) -> list[str]:
    names = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m and m.strip()]
    if not names:
        raise ConfigError("rank needs at least one backbone: --models a,b,c (see `transferkit models`).")
    if control and not names[0].endswith(RANDOM_SUFFIX):
        names.append(names[0] + RANDOM_SUFFIX)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"Backbone {duplicates[0]!r} is listed twice in --models; list each candidate once.")
    return names


def _score_names(scores: Sequence[str] | str | None, sort_by: str) -> list[str]:
    if scores is None:
        names = SCORES.names()
    else:
        names = [s.strip() for s in (scores.split(",") if isinstance(scores, str) else scores) if s.strip()]
    for name in [*names, sort_by]:
        SCORES.get(name)  # an unknown name fails here, with close matches
    if sort_by not in names:
        raise ConfigError(f"--sort-by {sort_by} is not among the computed scores ({', '.join(names)}); add it "
                          "to --scores.")
    return names


def _base_config(data: str, model: str, options: dict[str, Any]) -> RunConfig:
    """The data and preprocessing options as a RunConfig (unknown keys fail with close matches)."""
    reserved = sorted(set(options) & {"data", "model", "strategy", "strategy_options", "out", "epochs"})
    if reserved:
        raise ConfigError(f"rank sets {reserved[0]!r} itself; leave it out of the options.")
    return RunConfig.from_dict({"data": data, "model": model.removesuffix(RANDOM_SUFFIX),
                                **{k: v for k, v in options.items() if v is not None}})
