"""Transferability scores on synthetic cases with known answers, their invariances and their numerics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal, ortho_group

from transferkit.errors import DataError, UnknownNameError
from transferkit.transferability.scores import SCORES, hscore, leep, list_scores, logme, logme_fit, nce

K = 4


def class_features(n: int, dims: int, separation: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes around random centres `separation` apart (0: pure noise), balanced labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % K
    centres = rng.normal(size=(K, dims)) * separation
    return centres[labels] + rng.normal(size=(n, dims)), labels


def source_probs(labels: np.ndarray, sources: int, aligned: bool, seed: int = 0) -> np.ndarray:
    """Source-class probabilities: peaked on a class determined by the label (aligned) or at random."""
    rng = np.random.default_rng(seed)
    peak = labels * 3 if aligned else rng.integers(0, sources, len(labels))
    logits = rng.normal(size=(len(labels), sources))
    logits[np.arange(len(labels)), peak] += 4.0
    probs = np.exp(logits)
    return probs / probs.sum(1, keepdims=True)


def one_column_case(n: int, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    features, labels = class_features(n, dims, separation=1.0, seed=seed)
    return features * 3.0, (labels == 0).astype(np.float64)


def direct_evidence(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y; 0, F F^T / alpha + I / beta): the marginal likelihood, with the weights integrated out."""
    covariance = features @ features.T / alpha + np.eye(len(y)) / beta
    return float(multivariate_normal(np.zeros(len(y)), covariance, allow_singular=True).logpdf(y))


def evidence_function(features: np.ndarray, y: np.ndarray):
    """The same marginal likelihood as a fast function of (log alpha, log beta), for an optimiser."""
    eigenvalues, vectors = np.linalg.eigh(features @ features.T)
    y2 = (vectors.T @ y) ** 2

    def evidence(log_alpha: float, log_beta: float) -> float:
        variances = np.maximum(eigenvalues, 0) / np.exp(log_alpha) + 1 / np.exp(log_beta)
        return float(-0.5 * (len(y) * np.log(2 * np.pi) + np.log(variances).sum() + (y2 / variances).sum()))

    return evidence


# ---- separable features score higher than noise ----------------------------------------------------
@pytest.mark.parametrize("score", [logme, hscore])
@pytest.mark.parametrize(("n", "dims"), [(200, 16), (40, 400)], ids=["n>d", "d>n"])
def test_separable_features_score_higher_than_noise(score, n, dims):
    separable, labels = class_features(n, dims, separation=1.0)
    noise, _ = class_features(n, dims, separation=0.0)
    assert score(separable, labels) > score(noise, labels)


@pytest.mark.parametrize("score", [logme, hscore])
def test_more_separation_scores_higher(score):
    values = [score(*class_features(150, 20, separation=s)) for s in (0.0, 0.3, 1.0, 3.0)]
    assert values == sorted(values)


@pytest.mark.parametrize("score", [leep, lambda p, y: nce(p.argmax(1), y)], ids=["leep", "nce"])
def test_aligned_source_predictions_score_higher_than_random_ones(score):
    labels = np.arange(300) % K
    assert score(source_probs(labels, 20, aligned=True), labels) > score(source_probs(labels, 20, aligned=False), labels)


# ---- LogME is the maximum of the evidence --------------------------------------------------------
@pytest.mark.parametrize(("n", "dims", "seed"), [(60, 10, 0), (40, 40, 1), (30, 300, 2), (100, 3, 3)])
def test_logme_evidence_equals_the_direct_marginal_likelihood_at_its_alpha_and_beta(n, dims, seed):
    features, y = one_column_case(n, dims, seed)
    fit = logme_fit(features, y[:, None])[0]
    # Two routes to one number: with 300 dimensions for 30 samples the direct determinant loses about 1e-7
    # relative to rounding (it differs between BLAS builds), so equality is asserted to 1e-6.
    assert fit.evidence == pytest.approx(direct_evidence(features, y, fit.alpha, fit.beta), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize(("n", "dims", "seed"), [(60, 10, 0), (40, 40, 1), (30, 300, 2), (100, 3, 3)])
def test_logme_alpha_and_beta_maximise_the_evidence(n, dims, seed):
    features, y = one_column_case(n, dims, seed)
    fit = logme_fit(features, y[:, None])[0]
    for d_alpha in (-0.05, 0.0, 0.05):
        for d_beta in (-0.05, 0.0, 0.05):
            nearby = direct_evidence(features, y, fit.alpha * np.exp(d_alpha), fit.beta * np.exp(d_beta))
            assert nearby <= fit.evidence + 1e-6 * abs(fit.evidence)  # rounding of the direct route, as above
    evidence = evidence_function(features, y)
    found = minimize(lambda p: -evidence(*p), x0=[0.0, 0.0], method="Nelder-Mead",
                     options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 5000})
    assert -found.fun <= fit.evidence + 1e-5 * abs(fit.evidence)


def test_logme_is_the_mean_class_evidence_per_sample():
    features, labels = class_features(80, 12, separation=1.0)
    onehot = (labels[:, None] == np.arange(K)).astype(float)
    expected = np.mean([direct_evidence(features, onehot[:, c], f.alpha, f.beta)
                        for c, f in enumerate(logme_fit(features, onehot))]) / len(labels)
    assert logme(features, labels) == pytest.approx(expected, rel=1e-8)


# ---- invariances ------------------------------------------------------------------------------------
def _transformed(kind: str, features: np.ndarray, labels: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    if kind == "dims permuted":
        return features[:, rng.permutation(features.shape[1])], labels
    if kind == "rotated":
        return features @ ortho_group.rvs(features.shape[1], random_state=0), labels
    if kind == "scaled":
        return features * 37.0, labels
    if kind == "labels permuted":
        return features, rng.permutation(K)[labels]
    order = rng.permutation(len(labels))  # "samples permuted"
    return features[order], labels[order]


INVARIANCES = ["dims permuted", "rotated", "scaled", "labels permuted", "samples permuted"]


@pytest.mark.parametrize("score", [logme, hscore])
@pytest.mark.parametrize("kind", INVARIANCES)
@pytest.mark.parametrize(("n", "dims"), [(120, 10), (30, 60)], ids=["n>d", "d>n"])
def test_feature_scores_are_invariant(score, kind, n, dims):
    features, labels = class_features(n, dims, separation=0.7)
    moved = _transformed(kind, features, labels, np.random.default_rng(1))
    assert score(*moved) == pytest.approx(score(features, labels), rel=1e-6)


@pytest.mark.parametrize(("n", "dims"), [(50, 10), (20, 300), (300, 300)])
def test_shrinkage_hscore_matches_its_definition_with_scikit_learns_ledoit_wolf(n, dims):
    from sklearn.covariance import ledoit_wolf

    features, labels = class_features(n, dims, separation=0.5)
    features *= np.random.default_rng(4).uniform(0.1, 3.0, dims)  # unequal variances: a shrinkage in (0, 1)
    centred = features - features.mean(0)
    covariance, shrunk = ledoit_wolf(centred, assume_centered=True)
    means = np.stack([centred[labels == c].mean(0) for c in range(K)])
    between = means.T @ np.diag(np.bincount(labels) / n) @ means  # cov(E[f | y])
    assert 0 < shrunk < 1
    assert hscore(features, labels) == pytest.approx((1 - shrunk) * np.trace(np.linalg.solve(covariance, between)),
                                                     rel=1e-8)


def test_exact_hscore_is_invariant_to_any_invertible_linear_map():
    features, labels = class_features(300, 6, separation=0.7)
    mixing = np.random.default_rng(2).normal(size=(6, 6)) + 3 * np.eye(6)
    assert hscore(features @ mixing, labels, shrinkage=False) == pytest.approx(
        hscore(features, labels, shrinkage=False), rel=1e-8)


@pytest.mark.parametrize("score", [leep, lambda p, y: nce(p.argmax(1), y)], ids=["leep", "nce"])
@pytest.mark.parametrize("kind", ["source classes permuted", "labels permuted"])
def test_source_scores_are_invariant_to_relabelling(score, kind):
    rng = np.random.default_rng(3)
    labels = np.arange(200) % K
    probs = source_probs(labels, 12, aligned=True)
    moved = (probs[:, rng.permutation(12)], labels) if kind == "source classes permuted" else (
        probs, rng.permutation(K)[labels])
    assert score(*moved) == pytest.approx(score(probs, labels), rel=1e-12)


# ---- known values -----------------------------------------------------------------------------------
def test_exact_hscore_of_noise_free_class_features_is_classes_minus_one():
    labels = np.arange(40) % K
    features = np.eye(K)[labels] @ np.random.default_rng(0).normal(size=(K, 8))  # f depends on y only
    assert hscore(features, labels, shrinkage=False) == pytest.approx(K - 1, rel=1e-8)


def test_nce_is_zero_when_source_labels_determine_the_target_and_minus_entropy_when_uninformative():
    labels = np.arange(80) % K
    assert nce(labels * 5 + 1, labels) == pytest.approx(0.0, abs=1e-12)
    assert nce(np.zeros(80, dtype=int), labels) == pytest.approx(-np.log(K), rel=1e-12)


def test_leep_is_zero_for_a_deterministic_one_to_one_source_and_log_prior_for_a_constant_one():
    labels = np.array([0, 0, 0, 1, 2, 2])
    assert leep(np.eye(5)[labels + 2], labels) == pytest.approx(0.0, abs=1e-12)
    constant = np.full((6, 5), 0.2)
    prior = np.bincount(labels) / len(labels)
    assert leep(constant, labels) == pytest.approx(np.mean(np.log(prior[labels])), rel=1e-12)


# ---- numerics: few samples, many features -------------------------------------------------------
@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(("n", "dims"), [(8, 2000), (20, 5000), (12, 12)])
def test_scores_stay_finite_with_more_features_than_samples(n, dims):
    separable, labels = class_features(n, dims, separation=1.0)
    noise, _ = class_features(n, dims, separation=0.0)
    for score in (logme, hscore):
        values = score(separable, labels), score(noise, labels)
        assert np.isfinite(values).all()
        assert values[0] > values[1]


@pytest.mark.filterwarnings("error")
def test_logme_handles_rank_deficient_and_constant_features():
    features, labels = class_features(50, 5, separation=1.0)
    duplicated = np.hstack([features, features, np.zeros((50, 3))])  # rank 5 of 13 columns
    assert logme(duplicated, labels) == pytest.approx(logme(features, labels), rel=1e-6)
    assert np.isfinite(logme(np.ones((50, 4)), labels))
    assert np.isfinite(logme(np.zeros((50, 4)), labels))


# ---- input errors and the registry ------------------------------------------------------------------
@pytest.mark.parametrize("score", [logme, hscore, leep])
def test_one_class_is_refused(score):
    with pytest.raises(DataError, match=r"samples of at least two classes, got 1"):
        score(np.random.default_rng(0).random((10, 3)), np.zeros(10, dtype=int))


def test_bad_values_are_refused_with_their_shape_or_content():
    labels = np.arange(10) % 2
    with pytest.raises(DataError, match=r"one label per sample, got 10 labels for 9 samples"):
        logme(np.ones((9, 3)), labels)
    with pytest.raises(DataError, match=r"NaN or infinite"):
        hscore(np.full((10, 3), np.nan), labels)
    with pytest.raises(DataError, match=r"an \(n, d\) array of values, got shape \(10,\)"):
        leep(np.ones(10), labels)


def test_registry_lists_the_four_scores_and_suggests_close_names():
    assert list_scores() == ["logme", "hscore", "leep", "nce"]
    assert {name: SCORES.get(name).reads for name in list_scores()} == {
        "logme": "features", "hscore": "features", "leep": "source_probs", "nce": "source_probs"}
    with pytest.raises(UnknownNameError, match=r"Unknown transferability score 'logm'\. Did you mean 'logme'\?"):
        SCORES.get("logm")
