"""Transferability scores: how well a frozen backbone suits labeled target data, before training.

Pure numpy functions, each implemented from its paper, and a registry so that `rank` and the
`auto` strategy look them up by name. Every score is higher-is-better.

- `logme` and `hscore` read the backbone's features of the target samples.
- `leep` and `nce` read the backbone's own source-task (e.g. ImageNet) class probabilities (NCE
  their argmax), so they apply only to backbones that keep a source classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from transferkit.errors import DataError
from transferkit.registry import Registry

_TINY = 1e-300


@dataclass(frozen=True)
class LogMEFit:
    """The maximised evidence of one target column and the prior and noise precisions reaching it.

    Attributes:
        evidence: log p(y | F, alpha, beta) (not divided by the number of samples).
        alpha: precision of the isotropic Gaussian prior on the weights.
        beta: precision of the Gaussian observation noise.
        iterations: fixed-point iterations run.
    """

    evidence: float
    alpha: float
    beta: float
    iterations: int


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME: the log maximum evidence of a Bayesian linear model on the features, per sample.

    You, Liu, Wang and Long (2021), "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning", ICML. Each class becomes a one-hot target column y; with weights w ~ N(0, 1/alpha I)
    and y ~ N(F w, 1/beta I), the marginal likelihood p(y | F, alpha, beta) is maximised over alpha
    and beta by MacKay's fixed-point iteration (the paper's Algorithm 1). The score is the maximised
    log evidence divided by the number of samples, averaged over classes.

    The evidence is computed on the SVD of F and depends on F only through F F^T, so it is invariant
    to rotations (and permutations) of the feature dimensions and to a common scale of the
    features, and it stays finite when there are more features than samples. (Code that keeps the
    D/2 log(alpha) term but sums log|A| over the non-zero eigenvalues of F^T F only is off from the
    exact evidence by (D - rank F)/2 log(alpha), which matters only with more features than samples.)

    Args:
        features: (n, D) features.
        labels: (n,) integer class labels.
    """
    features, labels = _check(features, labels)
    targets = (labels[:, None] == np.unique(labels)[None, :]).astype(np.float64)
    fits = logme_fit(features, targets)
    return float(np.mean([fit.evidence for fit in fits]) / len(labels))


def logme_fit(features: np.ndarray, targets: np.ndarray, *, tol: float = 1e-8,
              max_iter: int = 1000) -> list[LogMEFit]:
    """Maximise the evidence of each column of `targets` (n, k) over alpha and beta.

    Args:
        features: (n, D) features.
        targets: (n, k) real-valued target columns (one-hot class indicators for LogME).
        tol: stop when alpha / beta changes by less than this fraction.
        max_iter: most fixed-point iterations per column.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64).reshape(len(f), -1)
    u, singular, _ = np.linalg.svd(f, full_matrices=False)
    rank_tol = (singular[0] if singular.size else 0.0) * max(f.shape) * np.finfo(np.float64).eps
    keep = singular > rank_tol
    sigma = singular[keep] ** 2  # the non-zero eigenvalues of F^T F
    projected = u[:, keep].T @ y  # targets in the column space of F
    outside = np.maximum((y ** 2).sum(0) - (projected ** 2).sum(0), 0.0)
    return [_maximise_evidence(sigma, projected[:, j] ** 2, outside[j], len(f), tol, max_iter)
            for j in range(y.shape[1])]


def _maximise_evidence(sigma: np.ndarray, x2: np.ndarray, outside: float, n: int, tol: float,
                       max_iter: int) -> LogMEFit:
    """MacKay's updates alpha = gamma / m^T m, beta = (n - gamma) / ||F m - y||^2 (Algorithm 1).

    With as many independent features as samples the target can be fitted exactly, and the evidence
    keeps growing (towards a finite limit) as the noise precision beta goes to infinity; the ratio
    t = alpha / beta is therefore kept within 1e-12..1e12 times the largest eigenvalue, which leaves
    the evidence within rounding of its supremum instead of overflowing.
    """
    total = float(x2.sum() + outside)
    if not sigma.size or total == 0:  # nothing to explain with: the evidence of pure noise
        beta = n / total if total else 1.0
        return LogMEFit(evidence_at(sigma, x2, outside, n, 1.0, beta), 1.0, beta, 0)
    t_min, t_max = sigma.max() * 1e-12, sigma.max() * 1e12
    alpha, beta = 1.0, n / total
    for iteration in range(1, max_iter + 1):
        t, previous = alpha / beta, alpha
        gamma = float((sigma / (sigma + t)).sum())  # the effective number of fitted parameters
        m2, res2 = _weights_and_residual(sigma, x2, outside, t)
        alpha, beta = (gamma / m2 if m2 > 0 else np.inf), (n - gamma) / res2
        t_new = min(max(alpha / beta, t_min), t_max)
        if t_new == t_min:  # beta -> infinity: keep alpha's own update
            beta = alpha / t_min
        elif t_new == t_max:  # alpha -> infinity: keep beta's
            alpha = beta * t_max
        if abs(t_new - t) <= tol * t and abs(alpha - previous) <= tol * previous:
            break
    return LogMEFit(evidence_at(sigma, x2, outside, n, alpha, beta), alpha, beta, iteration)


def _weights_and_residual(sigma: np.ndarray, x2: np.ndarray, outside: float, t: float) -> tuple[float, float]:
    """(m^T m, ||F m - y||^2) of the posterior mean m at alpha / beta = t."""
    m2 = float((sigma * x2 / (sigma + t) ** 2).sum())
    res2 = float((x2 * (t / (sigma + t)) ** 2).sum() + outside)
    return m2, res2


def evidence_at(sigma: np.ndarray, x2: np.ndarray, outside: float, n: int, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) from the non-zero eigenvalues `sigma` of F^T F (the paper's eq. 2).

    n/2 log beta + D/2 log alpha - n/2 log 2 pi - beta/2 ||F m - y||^2 - alpha/2 m^T m - 1/2 log|A|
    with A = alpha I + beta F^T F; the D - rank(F) zero eigenvalues of F^T F cancel their
    alpha terms, leaving -1/2 sum log(1 + beta sigma_i / alpha) over the non-zero ones.
    """
    m2, res2 = _weights_and_residual(sigma, x2, outside, alpha / beta)
    return float(n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi) - beta / 2 * res2 - alpha / 2 * m2
                 - 0.5 * np.log1p(beta * sigma / alpha).sum())


def hscore(features: np.ndarray, labels: np.ndarray, *, shrinkage: bool = True) -> float:
    """H-score: tr(cov(f)^-1 cov(E[f | y])), the discriminative share of the feature covariance.

    Bao, Li, Huang, Wang, Wang and Zheng (2019), "An Information-Theoretic Approach to
    Transferability in Task Transfer Learning", ICIP. The between-class covariance of the class
    means is weighed against the inverse of the feature covariance. That inverse is unstable with
    few samples or more features than samples, so by default the score is the shrinkage H-score of
    Ibrahim, Ponomareva and Mazumder (2022): tr(cov_a(f)^-1 (1 - a) cov(E[f | y])) with cov_a the
    Ledoit-Wolf estimate (1 - a) cov(f) + a tr(cov(f))/D I (Ledoit and Wolf, 2004). The shrunk
    score is invariant to rotations, permutations and a common scale of the features; the exact
    one (`shrinkage=False`, a pseudo-inverse) to any invertible linear map of them.

    Args:
        features: (n, D) features.
        labels: (n,) integer class labels.
        shrinkage: Ledoit-Wolf covariance (True) or the sample covariance (False).
    """
    features, labels = _check(features, labels)
    f = features - features.mean(0)
    classes, index = np.unique(labels, return_inverse=True)
    means = np.zeros((len(classes), f.shape[1]))
    np.add.at(means, index, f)
    weights = np.bincount(index) / len(f)
    means /= np.bincount(index)[:, None]  # E[f | y]; cov(E[f | y]) = means^T diag(weights) means
    if not shrinkage:
        u, singular, vt = np.linalg.svd(f, full_matrices=False)
        keep = singular > (singular[0] if singular.size else 0.0) * max(f.shape) * np.finfo(np.float64).eps
        projected = means @ vt[keep].T / singular[keep]  # pinv(cov f) = n V diag(1/s^2) V^T
        return float(len(f) * (weights * (projected ** 2).sum(1)).sum())
    mu, shrunk = ledoit_wolf_shrinkage(f)
    solved = _solve_shrunk_covariance(f, means, mu, shrunk)
    return float((1 - shrunk) * (weights * (means * solved.T).sum(1)).sum())


def ledoit_wolf_shrinkage(f: np.ndarray) -> tuple[float, float]:
    """(mu, a) of the Ledoit-Wolf (2004) estimate (1 - a) S + a mu I of centred features `f`.

    The same coefficient as scikit-learn's `ledoit_wolf_shrinkage(f, assume_centered=True)`,
    computed from the smaller of the (n, n) and (D, D) Gram matrices, so many features cost no
    (D, D) matrix.
    """
    n, d = f.shape
    gram = f @ f.T if n <= d else f.T @ f
    trace = float(np.trace(gram)) / n  # tr(S)
    mu = trace / d
    frobenius = float((gram ** 2).sum()) / n ** 2  # ||S||_F^2
    delta = (frobenius - 2 * mu * trace + d * mu ** 2) / d
    beta = min((float(((f ** 2).sum(1) ** 2).sum()) / n - frobenius) / (d * n), delta)
    return mu, (0.0 if beta <= 0 else beta / delta)


def _solve_shrunk_covariance(f: np.ndarray, means: np.ndarray, mu: float, shrunk: float) -> np.ndarray:
    """((1 - a) S + a mu I)^-1 means^T with S = f^T f / n; by Woodbury's identity when D > n."""
    n, d = f.shape
    ridge, scale = shrunk * mu, (1 - shrunk) / n
    if scale == 0:
        return means.T / ridge
    if d <= n or ridge == 0:
        return np.linalg.lstsq(scale * (f.T @ f) + ridge * np.eye(d), means.T, rcond=None)[0]
    inner = (ridge / scale) * np.eye(n) + f @ f.T
    return (means.T - f.T @ np.linalg.solve(inner, f @ means.T)) / ridge


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: the log expected empirical prediction of the source classifier on the target labels.

    Nguyen, Hassner, Seeger and Archambeau (2020), "LEEP: A New Measure to Evaluate
    Transferability of Learned Representations", ICML. From source-class probabilities
    theta(x) (n, Z): the empirical joint P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z, the
    conditional P(y | z) = P(y, z) / P(z), and LEEP = 1/n sum_i log sum_z P(y_i | z) theta(x_i)_z.
    At most 0; invariant to permutations of the source and the target classes.

    Args:
        source_probs: (n, Z) probabilities of the source classes (rows sum to 1).
        labels: (n,) integer target labels.
    """
    probs, labels = _check(source_probs, labels)
    _, index = np.unique(labels, return_inverse=True)
    joint = np.zeros((index.max() + 1, probs.shape[1]))
    np.add.at(joint, index, probs)
    joint /= len(labels)
    conditional = joint / np.maximum(joint.sum(0, keepdims=True), _TINY)  # P(y | z)
    expected = (probs * conditional[index]).sum(1)
    return float(np.mean(np.log(np.maximum(expected, _TINY))))


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE: the negative conditional entropy -H(Y | Z) of target labels given source labels.

    Tran, Nguyen and Hassner (2019), "Transferability and Hardness of Supervised Classification
    Tasks", ICCV. Z are the hard source labels the source classifier assigns (its argmax); the
    entropy is that of the empirical joint distribution of (Y, Z). At most 0 (reached when Z
    determines Y); invariant to permutations of the source and the target classes.

    Args:
        source_labels: (n,) integer source-class predictions.
        labels: (n,) integer target labels.
    """
    source_labels = np.asarray(source_labels).reshape(-1)
    _, y = np.unique(_check_labels(labels, len(source_labels)), return_inverse=True)
    _, z = np.unique(source_labels, return_inverse=True)
    joint = np.zeros((y.max() + 1, z.max() + 1))
    np.add.at(joint, (y, z), 1.0)
    joint /= len(y)
    p_z = joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log((joint / np.maximum(p_z, _TINY))[nonzero])).sum())


def _check(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise DataError(f"A score needs an (n, d) array of values, got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise DataError("The features hold NaN or infinite values; check the backbone and its preprocessing.")
    return values, _check_labels(labels, len(values))


def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != n:
        raise DataError(f"A score needs one label per sample, got {len(labels)} labels for {n} samples.")
    if len(np.unique(labels)) < 2:
        raise DataError(f"A score needs samples of at least two classes, got {len(np.unique(labels))}.")
    return labels


# ---- registry ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Score:
    """A registered transferability score.

    Attributes:
        fn: `fn(values, labels) -> float`, higher is better.
        reads: "features" (the backbone's features) or "source_probs" (its source-task class
            probabilities, which only backbones with a source classifier have).
        paper: short citation shown by `transferkit rank`.
    """

    fn: Callable[[np.ndarray, np.ndarray], float]
    reads: str
    paper: str


SCORES: Registry[Score] = Registry("transferability score")


def register_score(name: str, score: Score) -> Score:
    """Register a score under `name` for `rank` (`--scores`, `--sort-by`)."""
    return SCORES.register(name, score)


def list_scores() -> list[str]:
    return SCORES.names()


def _nce_of_probs(source_probs: np.ndarray, labels: np.ndarray) -> float:
    return nce(np.asarray(source_probs).argmax(1), labels)


register_score("logme", Score(logme, "features", "You et al., 2021"))
register_score("hscore", Score(hscore, "features", "Bao et al., 2019; shrinkage: Ibrahim et al., 2022"))
register_score("leep", Score(leep, "source_probs", "Nguyen et al., 2020"))
register_score("nce", Score(_nce_of_probs, "source_probs", "Tran et al., 2019"))
