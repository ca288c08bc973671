"""Frechet distance against closed forms and scipy's sqrtm; the digits feature
classifier and the data-vs-data floor."""

import numpy as np
import pytest
import scipy.linalg
import torch

from dmmd_ext.evaluation.frechet import (frechet_distance, frechet_distance_features,
                                         gaussian_fit, sqrtm_psd)


def random_spd(d, rng, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T + (0 if rank else 0.1 * np.eye(d))


def test_one_dimensional_closed_form():
    # N(m1, v1) vs N(m2, v2): (m1 - m2)^2 + (sqrt v1 - sqrt v2)^2
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)


def test_commuting_covariances_closed_form():
    rng = np.random.default_rng(0)
    v1, v2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    m1, m2 = rng.standard_normal(6), rng.standard_normal(6)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))  # common eigenbasis
    s1, s2 = q @ np.diag(v1) @ q.T, q @ np.diag(v2) @ q.T
    expected = ((m1 - m2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-9)


def test_general_case_matches_scipy_sqrtm_and_is_symmetric():
    rng = np.random.default_rng(1)
    for d, rank in ((5, None), (8, None), (7, 3)):
        s1, s2 = random_spd(d, rng, rank), random_spd(d, rng)
        m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
        cross = scipy.linalg.sqrtm(s1 @ s2).real
        expected = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * cross)
        assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-6, abs=1e-8)
        assert frechet_distance(m1, s1, m2, s2) == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-6)
        r = sqrtm_psd(s1)
        assert np.allclose(r @ r, s1, atol=1e-8)


def test_identical_and_shifted_feature_sets():
    rng = np.random.default_rng(2)
    f = rng.standard_normal((200, 4)) @ rng.standard_normal((4, 4))
    assert frechet_distance_features(f, f) == pytest.approx(0.0, abs=1e-9)
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert frechet_distance_features(f + shift, f) == pytest.approx((shift ** 2).sum(), rel=1e-9)
    mu, sigma = gaussian_fit(torch.from_numpy(f))
    assert np.allclose(sigma, np.cov(f, rowvar=False)) and np.allclose(mu, f.mean(0))


def test_argument_errors():
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance([0.0, 0.0], np.eye(2), [0.0, 0.0], np.eye(3))
    with pytest.raises(ValueError, match="features"):
        gaussian_fit(np.zeros((1, 3)))
