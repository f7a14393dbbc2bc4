"""Task metrics with the keys every run reports."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support  # deferred: scikit-learn is slow to import

    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, y_pred)), "macro_f1": float(f1),
            "precision": float(precision), "recall": float(recall)}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score  # deferred: scikit-learn is slow to import

    return {"mae": float(mean_absolute_error(y_true, y_pred)),
            "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
            "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan")}


def task_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return classification_metrics(y_true, y_pred) if task == "classification" else regression_metrics(y_true, y_pred)


def main_metric(task: str) -> tuple[str, str]:
    """The metric that selects checkpoints and stops early, and whether higher is better."""
    return ("accuracy", "max") if task == "classification" else ("rmse", "min")
