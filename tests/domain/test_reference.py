"""The reference's statistics: Ledoit-Wolf shrinkage as the paper defines it, Mahalanobis
distances that behave as the Gaussian says, thresholds from validation, and a JSON round trip
that keeps every distance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unitumour_dicom.domain.reference import (
    DomainReference,
    DomainReferenceError,
    GroupModel,
    fit_reference,
    ledoit_wolf,
)


def _lw_reference(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit & Wolf (2004), Lemma 3.2-3.4, written per sample: an independent check."""
    n, p = x.shape
    x = x - x.mean(axis=0)
    s = x.T @ x / n
    mu = np.trace(s) / p
    d2 = np.sum((s - mu * np.eye(p)) ** 2)
    b2 = sum(np.sum((np.outer(xk, xk) - s) ** 2) for xk in x) / n**2
    shrink = min(b2, d2) / d2
    return (1 - shrink) * s + shrink * mu * np.eye(p), shrink


@pytest.mark.parametrize(("n", "p"), [(20, 10), (200, 5), (15, 40)])
def test_ledoit_wolf_matches_the_papers_formula(n: int, p: int) -> None:
    rng = np.random.default_rng(n + p)
    x = rng.normal(size=(n, p)) @ rng.normal(size=(p, p))
    cov, shrink = ledoit_wolf(x)
    ref_cov, ref_shrink = _lw_reference(x)
    assert shrink == pytest.approx(ref_shrink, rel=1e-9)
    assert np.allclose(cov, ref_cov)
    assert 0.0 <= shrink <= 1.0
    assert np.linalg.eigvalsh(cov).min() > 0  # invertible even with n < p


def test_shrinkage_falls_as_samples_grow() -> None:
    rng = np.random.default_rng(0)
    few = ledoit_wolf(rng.normal(size=(12, 8)))[1]
    many = ledoit_wolf(rng.normal(size=(5000, 8)) * np.arange(1, 9))[1]
    assert few > 0.3 and many < 0.01


def test_full_rank_group_is_plain_mahalanobis_and_chi_distributed() -> None:
    rng = np.random.default_rng(1)
    p = 6
    a = np.eye(p) + 0.3 * rng.normal(size=(p, p))  # correlated, but well conditioned
    x = rng.normal(size=(4000, p)) @ a + 5.0
    model = GroupModel.fit(x, n_components=p)
    assert model.residual_var == 0.0
    z = (x - model.mean) / model.scale
    cov_z = np.cov(z, rowvar=False, bias=True)
    d_plain = np.sqrt(np.einsum("ij,jk,ik->i", z, np.linalg.inv(cov_z), z))
    # With 4000 samples the shrinkage is tiny, so distances agree closely. (Shrinkage towards
    # the mean eigenvalue does matter for nearly singular data, by design.)
    assert np.allclose(model.distance(x), d_plain, rtol=0.02)
    fresh = rng.normal(size=(4000, p)) @ a + 5.0
    assert np.mean(model.distance(fresh) ** 2) == pytest.approx(p, rel=0.1)  # chi-square, p dof
    shifted = fresh + 3.0 * a[0]  # three standard deviations along one direction of the data
    assert np.median(model.distance(shifted)) > np.median(model.distance(fresh)) + 1.0


def test_reduced_group_keeps_the_residual_directions() -> None:
    rng = np.random.default_rng(2)
    p = 40
    x = rng.normal(size=(500, p)) * np.r_[np.full(4, 10.0), np.full(p - 4, 0.5)]
    model = GroupModel.fit(x, n_components=4)
    assert model.residual_var > 0
    base = rng.normal(size=(200, p)) * np.r_[np.full(4, 10.0), np.full(p - 4, 0.5)]
    off_subspace = base.copy()
    off_subspace[:, 20] += 5.0  # ten standard deviations in a direction PCA left out
    assert np.median(model.distance(off_subspace)) > 1.5 * np.median(model.distance(base))


def _groups(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "stain": rng.normal(size=(n, 12)) + shift,
        "quality": rng.normal(size=(n, 4)),
        "network": rng.normal(size=(n, 20)) * np.linspace(0.5, 3, 20),
    }


def test_thresholds_come_from_validation_items_and_the_json_round_trip_is_exact() -> None:
    rng = np.random.default_rng(3)
    ref = fit_reference(_groups(rng, 400), _groups(rng, 200), n_components=8)
    assert 0 < ref.borderline <= ref.out_of_domain
    val = _groups(rng, 2000)
    scores = ref.tile_scores(val)
    assert 0.005 < np.mean(scores >= ref.borderline) < 0.08  # 2.5% by construction on val
    assert ref.verdict(float(np.median(ref.tile_scores(_groups(rng, 50, shift=3.0))))) == (
        "out_of_domain"
    )
    assert ref.verdict(None) == "unknown"
    text = json.dumps(ref.to_dict())
    back = DomainReference.from_dict(json.loads(text))
    assert back.borderline == pytest.approx(ref.borderline, rel=1e-6)
    assert np.allclose(back.tile_scores(val), scores, rtol=1e-4)  # float32 storage


def test_malformed_references_are_refused() -> None:
    rng = np.random.default_rng(4)
    good = fit_reference(_groups(rng, 100), _groups(rng, 50), n_components=4).to_dict()
    bad_schema = {**good, "schema": 99}
    with pytest.raises(DomainReferenceError, match="schema"):
        DomainReference.from_dict(bad_schema)
    bad_shape = json.loads(json.dumps(good))
    bad_shape["groups"]["stain"]["covariance"]["shape"] = [3, 3]
    with pytest.raises(DomainReferenceError):
        DomainReference.from_dict(bad_shape)
    bad_thresholds = {**good, "thresholds": {"borderline": 5.0, "out_of_domain": 1.0}}
    with pytest.raises(DomainReferenceError, match="thresholds"):
        DomainReference.from_dict(bad_thresholds)
    with pytest.raises(DomainReferenceError, match="dimensions"):
        DomainReference.from_dict(good).groups["stain"].distance(np.zeros((2, 5)))
