"""scikit-learn heads on cached features, converted into an equivalent torch Linear layer.

Folding the scaler and the fitted coefficients into `nn.Linear` means a run with a
scikit-learn head saves, predicts and exports exactly like any other run (no pickles).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.evaluation.metrics import main_metric, task_metrics
from transferkit.model import NN_HEADS
from transferkit.strategies.base import HeadOptions

SKLEARN_HEADS = {"classification": ("logistic", "ridge"), "regression": ("ridge",)}


def check_head(head: str, task: str) -> None:
    valid = list(NN_HEADS) + list(SKLEARN_HEADS[task])
    if head not in valid:
        raise ConfigError(f"Unknown head {head!r} for {task}. Choose one of: {', '.join(valid)}.")


#: Regularisation grids searched on the validation split when the strength is left unset.
GRIDS = {"logistic": ("C", (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)),
         "ridge": ("ridge_alpha", (0.1, 1.0, 10.0, 100.0, 1000.0))}


def _estimator(kind: str, task: str, strength: float):
    from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier  # deferred: scikit-learn is slow to import

    if kind == "logistic":
        return LogisticRegression(C=strength, max_iter=3000)
    return RidgeClassifier(alpha=strength) if task == "classification" else Ridge(alpha=strength)


def fit_selected_head(plan, feats: dict[str, np.ndarray], kind: str,
                      options: HeadOptions = HeadOptions()) -> dict[str, float]:
    """Fit a scikit-learn head into `plan.model.head`; a strength the options leave unset is chosen on validation.

    Returns the chosen strength as {"C": ...} or {"ridge_alpha": ...}, and its validation score.
    """
    name, grid = GRIDS[kind]
    fixed = getattr(options, name)
    targets = plan.splits["train"].targets
    if fixed is not None or "val" not in feats:
        strength = fixed if fixed is not None else 1.0
        fit_sklearn_head(plan, feats["train"], targets, kind, options.standardize, strength)
        return {name: strength}
    metric, mode = main_metric(plan.config.task)
    best = None
    for strength in grid:
        fit_sklearn_head(plan, feats["train"], targets, kind, options.standardize, strength)
        score = task_metrics(plan.config.task, plan.splits["val"].targets, head_predictions(plan, feats["val"]))[metric]
        score = score if mode == "max" else -score
        if best is None or score > best[0]:
            best = (score, strength, {k: v.clone() for k, v in plan.model.head.state_dict().items()})
    plan.model.head.load_state_dict(best[2])
    return {name: best[1], f"val_{metric}": abs(best[0])}


def head_predictions(plan, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = plan.model.head(torch.from_numpy(np.array(features, dtype=np.float32)))
    if plan.config.task == "classification":
        return logits.argmax(-1).numpy()
    return plan.scaling.restore(logits.squeeze(-1).numpy())


def fit_sklearn_head(plan, features: np.ndarray, targets: np.ndarray, kind: str,
                     standardize: bool = False, strength: float = 1.0) -> None:
    """Fit on scaled features and fold the scaling into `plan.model.head` (a Linear layer).

    By default one global scale brings the features to unit root-mean-square, so C means the
    same for every backbone. Per-feature standardising (`standardize=True`) is optional:
    folding it back gives near-constant features huge weights, which blow up as soon as
    fine-tuning moves those features.
    """
    from sklearn.preprocessing import StandardScaler  # deferred: scikit-learn is slow to import
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, dtype=np.float64)
    scaler = StandardScaler(with_mean=standardize, with_std=standardize).fit(features)
    rms = 1.0 if standardize else float(np.sqrt(np.mean(features ** 2))) or 1.0
    x = scaler.transform(features) / rms
    y = plan.scaling.standardise(targets)  # the identity for classification
    # One BLAS thread: L-BFGS on a few thousand rows is many tiny products, and OpenBLAS's threads
    # waiting on each other made a 500 x 1280 logistic fit ~10x slower with two (0.58 s vs 0.06 s).
    with threadpool_limits(limits=1, user_api="blas"):
        est = _estimator(kind, plan.config.task, strength).fit(x, y)
    coef = np.atleast_2d(est.coef_).astype(np.float64)
    intercept = np.atleast_1d(est.intercept_).astype(np.float64)
    n_out = plan.model.head.out_features
    if coef.shape[0] == 1 and n_out == 2:  # binary: sklearn keeps one score for the positive class
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    scale = scaler.scale_ if standardize else np.full(coef.shape[1], rms)
    weight = coef / scale
    bias = intercept - (weight @ scaler.mean_ if standardize else 0.0)
    head: nn.Linear = plan.model.head
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


def sklearn_history(plan, feats: dict[str, np.ndarray]) -> list[dict]:
    """One 'epoch' row with train and val metrics, so every run has a history."""
    row: dict = {"epoch": 0}
    for split, x in feats.items():
        preds = head_predictions(plan, x)
        for name, value in task_metrics(plan.config.task, plan.splits[split].targets, preds).items():
            row[f"{split}/{name}"] = value
    return [row]
