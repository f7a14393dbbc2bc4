"""`auto`: choose the strategy from the data before training, by a documented rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from transferkit.errors import ConfigError
from transferkit.model import NN_HEADS
from transferkit.strategies.base import ChoiceContext, Strategy, StrategyChoice, StrategyConfig, option
from transferkit.strategies.full import Full
from transferkit.transferability.scores import logme

#: Samples the feature-fit probe reads at most (a stratified subsample beyond that), to stay cheap.
PROBE_SAMPLES = 2000
#: Cross-validation folds of the probe (fewer when a class has fewer labels).
PROBE_FOLDS = 5


@dataclass(frozen=True)
class AutoConfig(StrategyConfig):
    """Args:
        few_labels: below this many labels per class, keep the backbone frozen (feature extraction).
        many_labels: from this many labels per class on, fine-tune every layer (full).
        high_fit: from this feature fit on, the frozen features already separate the classes: keep them.
        low_fit: below this feature fit, the target is far from the pretraining: every layer adapts.
        budget_seconds: the most seconds fine-tuning may take, estimated from a timed training step
            per sample x training samples x epochs; beyond it, feature extraction. None: no limit.
    """

    few_labels: int = option(10, "below this many labels per class: feature extraction")
    many_labels: int = option(100, "from this many labels per class on: full fine-tuning")
    high_fit: float = option(0.95, "from this frozen-feature fit on: feature extraction")
    low_fit: float = option(0.5, "below this frozen-feature fit: full fine-tuning")
    budget_seconds: float | None = option(None, "most seconds fine-tuning may take (estimated; beyond: feature "
                                          "extraction)", min=0, min_open=True)

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.few_labels <= self.many_labels:
            raise ConfigError(f"auto needs 1 <= few_labels <= many_labels, got {self.few_labels} and "
                              f"{self.many_labels}.")
        if not 0 <= self.low_fit <= self.high_fit <= 1:
            raise ConfigError(f"auto needs 0 <= low_fit <= high_fit <= 1, got {self.low_fit} and {self.high_fit}.")


class Auto(Strategy):
    """Pick feature extraction, L2-SP or full fine-tuning from the data, and say why.

    When to use: a new data set and no time to compare strategies. Before training, it measures
    the labels per class k (for regression: the training samples), the number of classes, and the
    *feature fit*: how well the frozen pretrained features already separate the target classes, a
    cross-validated logistic-regression probe on the cached features scaled from the majority-class
    rate (0) to perfect (1) (cross-validated R^2 of a ridge probe for regression). The rule, first
    match wins:

    1. a scikit-learn head (`--head logistic|ridge`) is asked for -> feature-extraction;
    2. k < few_labels (10) -> feature-extraction: too few labels to move pretrained weights
       without overfitting (the usual advice for small data sets, e.g. the CS231n transfer
       learning notes; a linear probe is also what LP-FT starts from, Kumar et al., 2022);
    3. feature fit >= high_fit (0.95) -> feature-extraction: the frozen features already solve
       the task, fine-tuning has little to add;
    4. estimated fine-tuning seconds > budget_seconds -> feature-extraction;
    5. k >= many_labels (100) -> full: enough labels to adapt every layer;
    6. feature fit < low_fit (0.5) -> full: the target is far from the pretraining, so the
       upper layers' features must change;
    7. otherwise (moderate labels, related features) -> l2sp: fine-tune every layer but pull the
       weights toward the pretrained ones (Li, Grandvalet and Davoine, 2018).

    The chosen strategy then trains with its own defaults. The measurements, the rule's steps and
    the choice are written to metrics.json (`strategy_choice`) and printed in the run summary; the
    saved config.yaml names the chosen strategy, so a resume trains on with it.
    """

    name = "auto"
    config_class = AutoConfig
    when_to_use = "Unsure: picks feature-extraction, l2sp or full from labels per class, feature fit and budget."
    defaults = {"epochs": None, "lr": None, "head": None}  # the chosen strategy's
    chooses_from_data = True

    def choose(self, context: ChoiceContext) -> StrategyChoice:
        signals = measure(context, self.config)
        strategy, reasons = choose(signals, self.config)
        return StrategyChoice(self.name, strategy, {}, tuple(reasons), signals)

    def prepare(self, model) -> None:
        raise ConfigError("Strategy 'auto' only chooses a strategy from the data; train through transferkit.fit, "
                          "which lets it choose first (Strategy.choose).")


def measure(context: ChoiceContext, cfg: AutoConfig) -> dict[str, Any]:
    """The measurements the rule reads, from the training split and its cached frozen features."""
    train, config = context.splits["train"], context.config
    signals: dict[str, Any] = {"task": config.task, "n_train": len(train), "head": config.head}
    features, targets = subsample(context.features("train"), train.targets, config.task, config.seed)
    if config.task == "classification":
        counts = np.bincount(train.targets, minlength=len(train.classes))
        signals.update(classes=len(train.classes), labels_per_class=int(counts.min()))
        signals.update(probe(features, targets, "classification", config.seed))
        signals["logme"] = round(logme(features, targets), 4)  # for the record; the rule reads the probe
    else:
        signals.update(classes=None, labels_per_class=len(train))
        signals.update(probe(features, targets, "regression", config.seed))
    if cfg.budget_seconds is not None:
        signals["fine_tune_seconds"] = float(f"{fine_tune_seconds(context):.3g}")  # significant digits: never rounds to 0
    return signals


def probe(features: np.ndarray, targets: np.ndarray, task: str, seed: int) -> dict[str, Any]:
    """Cross-validated linear probe on frozen features: {"probe_score", "baseline", "feature_fit"}.

    Classification: accuracy of a logistic regression (C=1 on features scaled to unit RMS), with
    the majority-class rate as baseline; feature_fit = (accuracy - baseline) / (1 - baseline).
    Regression: R^2 of a ridge regression, baseline 0. feature_fit is None when a class has fewer
    than two samples (nothing to cross-validate).
    """
    from sklearn.linear_model import LogisticRegression, Ridge  # deferred: scikit-learn is slow to import
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    x, y = np.asarray(features, dtype=np.float64), np.asarray(targets)
    x = x / (np.sqrt(np.mean(x ** 2)) or 1.0)
    if task == "classification":
        counts = np.bincount(y)
        counts = counts[counts > 0]
        baseline, folds = float(counts.max() / counts.sum()), int(min(PROBE_FOLDS, counts.min()))
        if folds < 2:
            return {"probe_score": None, "baseline": round(baseline, 4), "feature_fit": None}
        split = StratifiedKFold(folds, shuffle=True, random_state=seed)
        score = cross_val_score(LogisticRegression(C=1.0, max_iter=2000), x, y, cv=split).mean()
    else:
        baseline, folds = 0.0, min(PROBE_FOLDS, len(y))
        if folds < 2:
            return {"probe_score": None, "baseline": 0.0, "feature_fit": None}
        score = cross_val_score(Ridge(alpha=1.0), x, y, cv=KFold(folds, shuffle=True, random_state=seed)).mean()
    fit = (score - baseline) / (1 - baseline) if baseline < 1 else 1.0
    return {"probe_score": round(float(score), 4), "baseline": round(baseline, 4),
            "feature_fit": round(float(np.clip(fit, 0.0, 1.0)), 4)}


def subsample(x: np.ndarray, y: np.ndarray, task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most PROBE_SAMPLES rows, every class keeping its share (and at least two rows)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    if len(y) <= PROBE_SAMPLES:
        return x, y
    rng = np.random.default_rng(seed)
    if task != "classification":
        keep = rng.choice(len(y), PROBE_SAMPLES, replace=False)
    else:  # the same share of every class
        keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:max(2, round(PROBE_SAMPLES * np.mean(y == c)))]
                               for c in np.unique(y)])
    return x[np.sort(keep)], y[np.sort(keep)]


def fine_tune_seconds(context: ChoiceContext) -> float:
    """Estimated seconds of fine-tuning: per-sample step time x (train + a third of val) x epochs."""
    epochs = context.config.epochs or Full.defaults["epochs"]
    samples = len(context.splits["train"]) + len(context.splits["val"]) / 3  # validation: forward only
    return context.step_seconds() * samples * epochs


def choose(signals: dict[str, Any], cfg: AutoConfig) -> tuple[str, list[str]]:
    """Apply the rule of `Auto` to the measurements; returns (strategy, reasons)."""
    k, fit = signals["labels_per_class"], signals.get("feature_fit")
    reasons = [describe(signals)]
    head, seconds = signals.get("head"), signals.get("fine_tune_seconds")
    if head is not None and head not in NN_HEADS:
        return "feature-extraction", reasons + [f"--head {head} fits on frozen features only"]
    if k < cfg.few_labels:
        return "feature-extraction", reasons + [
            f"{k} labels per class < few_labels={cfg.few_labels}: too few to fine-tune without overfitting"]
    if fit is not None and fit >= cfg.high_fit:
        return "feature-extraction", reasons + [
            f"feature fit {fit:.2f} >= high_fit={cfg.high_fit}: the frozen features already separate the classes"]
    if seconds is not None and seconds > cfg.budget_seconds:
        return "feature-extraction", reasons + [
            f"fine-tuning would take about {seconds:.3g} s > budget_seconds={cfg.budget_seconds:g}"]
    if k >= cfg.many_labels:
        return "full", reasons + [f"{k} labels per class >= many_labels={cfg.many_labels}: enough to adapt every layer"]
    if fit is not None and fit < cfg.low_fit:
        return "full", reasons + [
            f"feature fit {fit:.2f} < low_fit={cfg.low_fit}: the target is far from the pretraining, every layer adapts"]
    return "l2sp", reasons + [
        f"{cfg.few_labels} <= {k} labels per class < {cfg.many_labels} and feature fit between {cfg.low_fit} and "
        f"{cfg.high_fit}: fine-tune every layer, held near the pretrained weights"]


def describe(signals: dict[str, Any]) -> str:
    """One line of the measurements, e.g. "50 labels per class, 10 classes; frozen-feature probe ..."."""
    if signals["task"] == "classification":
        text = f"{signals['labels_per_class']} labels per class, {signals['classes']} classes"
        probe_text = "accuracy {score} vs majority {baseline}"
    else:
        text = f"{signals['n_train']} training samples (regression)"
        probe_text = "R^2 {score}"
    if signals.get("feature_fit") is not None:
        measured = probe_text.format(score=f"{signals['probe_score']:.3f}", baseline=f"{signals['baseline']:.3f}")
        text += f"; frozen-feature probe {measured} (feature fit {signals['feature_fit']:.2f})"
    if signals.get("fine_tune_seconds") is not None:
        text += f"; fine-tuning estimated at {signals['fine_tune_seconds']:.0f} s"
    return text
