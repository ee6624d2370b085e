"""make_relu_regression: the planted model of docs/theory.rst, "The model and its loss"."""

import numpy as np
import pytest

from sklearn_relu import make_relu_regression


def test_shapes_and_the_planted_relation():
    X, y, w = make_relu_regression(n_samples=50, n_features=7, coef=True, random_state=0)
    assert X.shape == (50, 7) and y.shape == (50,) and w.shape == (7,)
    np.testing.assert_array_equal(y, np.maximum(X @ w, 0))
    X2, y2 = make_relu_regression(n_samples=50, n_features=7, random_state=0)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


def test_reproducible_and_seed_dependent():
    a = make_relu_regression(20, 3, random_state=1)
    b = make_relu_regression(20, 3, random_state=np.random.RandomState(1))
    c = make_relu_regression(20, 3, random_state=2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_gaussian_design_and_coefficients():
    # Standard errors at n = 20000: 0.0071 for a column's mean and an
    # off-diagonal covariance, 0.010 for a variance, 0.0035 for the share of
    # zero targets. The bounds are 5 or more of them away (two-sided normal
    # tails: 6e-7 for each variance, far less for the rest, 3e-6 in all; the
    # data are a fixed seed's, so this is the chance that a seed fails).
    X, y, w = make_relu_regression(n_samples=20000, n_features=5, coef=True,
                                   random_state=3)
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=0.05)
    np.testing.assert_allclose(np.cov(X.T), np.eye(5), atol=0.05)
    # About half the targets are exactly zero.
    assert 0.45 < np.mean(y == 0) < 0.55


def test_noise_has_the_requested_standard_deviation():
    X, y, w = make_relu_regression(n_samples=20000, n_features=4, noise=0.3, coef=True,
                                   random_state=4)
    residual = y - np.maximum(X @ w, 0)
    # Standard errors at n = 20000: 0.0015 for the standard deviation (the
    # bound, 0.015, is 10 of them), 0.0021 for the mean (0.01 is 4.7 of them:
    # a seed fails with probability 3e-6).
    assert np.std(residual) == pytest.approx(0.3, rel=0.05)
    assert abs(np.mean(residual)) < 0.01
