"""scikit-learn heads on cached features, converted into an equivalent torch Linear layer.

Folding the scaler and the fitted coefficients into `nn.Linear` means a run with a
scikit-learn head saves, predicts and exports exactly like any other run (no pickles).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.training.model import NN_HEADS

SKLEARN_HEADS = {"classification": ("logistic", "ridge"), "regression": ("ridge",)}


def check_head(head: str, task: str) -> None:
    valid = list(NN_HEADS) + list(SKLEARN_HEADS[task])
    if head not in valid:
        raise ConfigError(f"Unknown head {head!r} for {task}. Choose one of: {', '.join(valid)}.")


def _estimator(kind: str, task: str, options):
    from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier

    if kind == "logistic":
        C = getattr(options, "C", 1.0)
        if C is None:  # chosen by 3-fold cross-validation on the training features
            from sklearn.linear_model import LogisticRegressionCV

            return LogisticRegressionCV(Cs=np.logspace(-2, 2, 5).tolist(), cv=3, max_iter=3000)
        return LogisticRegression(C=C, max_iter=3000)
    alpha = getattr(options, "ridge_alpha", 1.0)
    return RidgeClassifier(alpha=alpha) if task == "classification" else Ridge(alpha=alpha)


def fit_sklearn_head(prep, features: np.ndarray, targets: np.ndarray, kind: str | None = None,
                     standardize: bool = False) -> None:
    """Fit on scaled features and fold the scaling into `prep.model.head` (a Linear layer).

    By default one global scale brings the features to unit root-mean-square, so C means the
    same for every backbone. Per-feature standardising (`standardize=True`) is optional:
    folding it back gives near-constant features huge weights, which blow up as soon as
    fine-tuning moves those features.
    """
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64)
    scaler = StandardScaler(with_mean=standardize, with_std=standardize).fit(features)
    rms = 1.0 if standardize else float(np.sqrt(np.mean(features ** 2))) or 1.0
    x = scaler.transform(features) / rms
    y = targets
    if prep.config.task == "regression":
        y = (targets - prep.target_stats[0]) / prep.target_stats[1]
    kind = kind or prep.config.head
    est = _estimator(kind, prep.config.task, prep.strategy.config).fit(x, y)
    coef = np.atleast_2d(est.coef_).astype(np.float64)
    intercept = np.atleast_1d(est.intercept_).astype(np.float64)
    n_out = prep.model.head.out_features
    if coef.shape[0] == 1 and n_out == 2:  # binary: sklearn keeps one score for the positive class
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    scale = scaler.scale_ if standardize else np.full(coef.shape[1], rms)
    weight = coef / scale
    bias = intercept - (weight @ scaler.mean_ if standardize else 0.0)
    head: nn.Linear = prep.model.head
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


def sklearn_history(prep, feats: dict[str, np.ndarray], out: Path) -> list[dict]:
    """One 'epoch' row with train and val metrics, so every run has a history."""
    from transferkit.evaluation.metrics import task_metrics

    row: dict = {"epoch": 0}
    head = prep.model.head
    for split, x in feats.items():
        with torch.no_grad():
            logits = head(torch.from_numpy(np.array(x)))
        if prep.config.task == "classification":
            preds = logits.argmax(-1).numpy()
        else:
            preds = logits.squeeze(-1).numpy() * prep.target_stats[1] + prep.target_stats[0]
        for name, value in task_metrics(prep.config.task, prep.splits[split].targets, preds).items():
            row[f"{split}/{name}"] = value
    return [row]
