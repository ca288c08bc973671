"""Frechet distance against closed forms and scipy's sqrtm; the digits feature
classifier and the data-vs-data floor."""

import numpy as np
import pytest
import scipy.linalg
import torch

from dmmd_ext.evaluation.frechet import (frechet_distance, frechet_distance_features,
                                         gaussian_fit, sqrtm_psd)


pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_digits_classifier_features_separate_real_from_corrupted():
    from sklearn.datasets import load_digits

    from dmmd_ext.evaluation.frechet import (ClassifierConfig, digits_frechet, sklearn_digit_labels,
                                             train_digit_classifier)

    d = load_digits()
    perm = torch.randperm(len(d.target), generator=torch.Generator().manual_seed(0))
    x, y = torch.from_numpy(d.data).long()[perm], torch.from_numpy(d.target).long()[perm]
    train, heldout = x[:1400], x[1400:]
    assert torch.equal(sklearn_digit_labels(train[:50]), y[:50])
    model = train_digit_classifier(train, y[:1400], 17, ClassifierConfig(steps=300))
    with torch.no_grad():
        acc = (model(heldout).argmax(1) == y[1400:]).double().mean().item()
    assert acc > 0.9
    g = torch.Generator().manual_seed(1)
    n = heldout.shape[0]
    noise = torch.randint(0, 17, (n, 64), generator=g)
    shuffled = heldout[:, torch.randperm(64, generator=g)]
    one_class = train[y[:1400] == 3][:n]  # mode collapse onto one digit
    res = {name: digits_frechet(model, s, train, heldout)
           for name, s in (("noise", noise), ("shuffled", shuffled), ("one_class", one_class))}
    floor = res["noise"]["frechet_floor"]
    assert floor == res["shuffled"]["frechet_floor"]  # the floor does not depend on the samples
    for name, r in res.items():
        assert r["frechet"] > 3 * floor, name
    with pytest.raises(ValueError, match="row 0"):
        sklearn_digit_labels(torch.full((1, 64), 16))

    from dmmd_ext.evaluation.suite import EvalSuite

    suite = EvalSuite(train, heldout, classifier=model)  # no reference, no true model
    base = suite.baseline()
    assert set(base) == {"unigram_entropy", "frechet"}
    assert base["frechet"] == pytest.approx(digits_frechet(model, suite.heldout, train, heldout)["frechet"])
    assert suite.measure(noise[: suite.heldout.shape[0]])["frechet"] > 3 * base["frechet"]
