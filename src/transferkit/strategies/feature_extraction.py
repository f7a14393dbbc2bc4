"""Feature extraction: a frozen backbone whose features are computed once, then a new head."""

from __future__ import annotations

from dataclasses import dataclass

from transferkit.strategies.base import HeadOptions, Strategy, StrategyConfig, option


@dataclass(frozen=True)
class FeatureExtractionConfig(StrategyConfig):
    """Args:
        C: inverse regularisation strength of the `logistic` head (scikit-learn's C); None
            chooses it on the validation split from 0.001..100 (features are scaled to unit RMS).
        ridge_alpha: regularisation strength of the `ridge` head; None chooses it likewise.
        standardize: standardise features before a scikit-learn head (folded into the saved layer).
    """

    C: float | None = option(None, "logistic head: inverse regularisation (unset: chosen on the validation split)",
                             min=0, min_open=True)
    ridge_alpha: float | None = option(None, "ridge head: regularisation strength (unset: chosen on validation)",
                                       min=0, min_open=True)
    standardize: bool = option(False, "standardise features per dimension before a scikit-learn head")


class FeatureExtraction(Strategy):
    """Frozen pretrained backbone as a fixed feature extractor (Donahue et al., 2014, DeCAF).

    When to use: very few labels, little compute, or a target close to the pretraining data.
    Features are cached on disk, so trying several heads costs one backbone pass.
    """

    name = "feature-extraction"
    config_class = FeatureExtractionConfig
    when_to_use = "Few labels or little compute: frozen backbone, cached features, new head (default logistic)."
    defaults = {"epochs": 50, "lr": 3e-3, "head": "logistic"}
    uses_cached_features = True

    def trainable_at(self, epoch, group_names):
        return []

    def head_options(self) -> HeadOptions:
        return HeadOptions(C=self.config.C, ridge_alpha=self.config.ridge_alpha, standardize=self.config.standardize)
