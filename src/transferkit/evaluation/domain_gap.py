"""Proxy A-distance: how well a linear classifier tells two domains apart from their features.

Ben-David et al. (2007, 2010) bound the target error by the source error plus the A-distance
between the domains; its proxy, 2 (1 - 2 err) with err the held-out error of a domain classifier,
is 0 for indistinguishable domains and 2 for perfectly separable ones (Ganin et al., 2016, report it
before and after adaptation).
"""

from __future__ import annotations

import numpy as np


def proxy_a_distance(source: np.ndarray, target: np.ndarray, *, seed: int = 0, folds: int = 5,
                     C: float = 1.0) -> float:
    """2 (1 - 2 err), err the cross-validated error of a logistic regression separating the two feature sets.

    Give both domains the same number of rows, so that chance is an error of 0.5. An error above
    0.5 (worse than chance) counts as 0.5.

    Raises:
        ValueError: fewer than two rows in a domain.
    """
    from sklearn.linear_model import LogisticRegression  # deferred: scikit-learn is slow to import
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    folds = min(folds, len(source), len(target))
    if folds < 2:
        raise ValueError(f"The proxy A-distance needs two samples per domain, got {len(source)} and {len(target)}.")
    x = np.concatenate([np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)])
    y = np.r_[np.ones(len(source)), np.zeros(len(target))]
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    # One BLAS thread: right after a torch pass, BLAS threads competing with torch's can make the fits minutes slower.
    with threadpool_limits(limits=1):
        accuracy = cross_val_score(probe, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed)).mean()
    error = min(1.0 - float(accuracy), 0.5)
    return 2.0 * (1.0 - 2.0 * error)
