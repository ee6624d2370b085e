"""The loss and generalized gradient against a naive per-row Python loop."""

import numpy as np
import pytest

from sklearn_relu._gradient import batch_gradient, loss_sums, relu_derivative, split_params


def naive_gradient(X, y, sample_weight, params, rows, scale):
    """Row by row, in plain Python floats: the definition of docs/theory.rst,
    "The model and its loss"."""
    n_features = X.shape[1]
    fit_intercept = len(params) > n_features
    gradient = [0.0] * len(params)
    loss = weight_total = 0.0
    for i in rows:
        z = sum(float(X[i, j]) * float(params[j]) for j in range(n_features))
        if fit_intercept:
            z += float(params[n_features])
        derivative = 1.0 if z > 0 else (0.5 if z == 0 else 0.0)
        weight = 1.0 if sample_weight is None else float(sample_weight[i])
        residual = max(z, 0.0) - float(y[i])
        for j in range(n_features):
            gradient[j] += weight * residual * derivative * float(X[i, j])
        if fit_intercept:
            gradient[n_features] += weight * residual * derivative
        loss += 0.5 * weight * residual**2
        weight_total += weight
    return np.array(gradient) * scale, loss, weight_total


def problem(n=30, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.maximum(X @ rng.standard_normal(d), 0)
    return X, y, rng


def assert_close(actual, expected):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    scale = max(np.abs(expected).max(), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_batch_gradient_matches_naive_loop(fit_intercept, weighted, seed):
    X, y, rng = problem(seed=seed)
    params = rng.standard_normal(X.shape[1] + fit_intercept)
    weights = rng.uniform(0, 3, X.shape[0]) if weighted else None
    # Repeated rows, as sampling with replacement draws them.
    rows = np.array([0, 3, 3, 7, 12, 12, 12, 29, 1])
    scale = 1 / len(rows)
    gradient, loss, weight = batch_gradient(X, y, weights, params, rows, scale)
    expected = naive_gradient(X, y, weights, params, rows, scale)
    assert gradient.shape == params.shape and gradient.dtype == np.float64
    assert_close(gradient, expected[0])
    assert_close(loss, expected[1])
    assert_close(weight, expected[2])


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_gradient_at_zero_uses_half_derivative(fit_intercept):
    # At params = 0 every z is exactly 0: relu'(0) = 1/2, so the gradient is
    # -1/2 times the mean of y_i x_i (docs/theory.rst, "The start").
    X, y, _ = problem()
    params = np.zeros(X.shape[1] + fit_intercept)
    rows = np.arange(X.shape[0])
    gradient, _, _ = batch_gradient(X, y, None, params, rows, 1 / len(rows))
    assert_close(gradient[: X.shape[1]], -0.5 * (X.T @ y) / len(y))
    if fit_intercept:
        assert_close(gradient[-1], -0.5 * y.mean())
    assert_close(gradient, naive_gradient(X, y, None, params, rows, 1 / len(rows))[0])


def test_exact_zero_preactivation_in_a_mixed_batch():
    # Row 1 has z = 0 exactly at these params; rows 0 and 2 are active / inactive.
    X = np.array([[1.0, 2.0], [2.0, -1.0], [-1.0, -1.0]])
    y = np.array([1.0, 3.0, 0.5])
    params = np.array([1.0, 2.0])
    rows = np.arange(3)
    gradient, _, _ = batch_gradient(X, y, None, params, rows, 1.0)
    # Row 0: z = 5, residual 4; row 1: z = 0, residual -3, derivative 1/2; row 2: 0.
    expected = 4 * X[0] + 0.5 * (-3) * X[1]
    assert_close(gradient, expected)
    assert_close(gradient, naive_gradient(X, y, None, params, rows, 1.0)[0])


def test_integer_weights_equal_repeated_rows():
    X, y, rng = problem()
    params = rng.standard_normal(X.shape[1] + 1)
    weights = np.zeros(X.shape[0])
    weights[[2, 5]] = [3.0, 1.0]
    g_weighted, loss_w, weight_w = batch_gradient(X, y, weights, params, np.arange(30), 1.0)
    g_repeated, loss_r, weight_r = batch_gradient(X, y, None, params, np.array([2, 2, 2, 5]), 1.0)
    assert_close(g_weighted, g_repeated)
    assert_close(loss_w, loss_r)
    assert weight_w == weight_r == 4.0


def test_float32_gradient_stays_float32():
    X, y, rng = problem()
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    params = rng.standard_normal(X.shape[1]).astype(np.float32)
    rows = np.arange(10)
    gradient, _, _ = batch_gradient(X32, y32, None, params, rows, 0.1)
    assert gradient.dtype == np.float32
    expected = naive_gradient(X32, y32, None, params, rows, 0.1)[0]
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_loss_sums_matches_naive_loop(weighted):
    X, y, rng = problem()
    params = rng.standard_normal(X.shape[1] + 1)
    weights = rng.uniform(0, 2, X.shape[0]) if weighted else None
    loss, weight = loss_sums(X, y, weights, params)
    _, naive_loss, naive_weight = naive_gradient(X, y, weights, params, range(30), 1.0)
    assert_close(loss, naive_loss)
    assert_close(weight, naive_weight)


def test_gradient_is_the_derivative_of_the_loss():
    # Away from kinks the generalized gradient is the true gradient.
    X, y, rng = problem(n=50)
    params = rng.standard_normal(X.shape[1] + 1)
    rows = np.arange(50)
    gradient, _, _ = batch_gradient(X, y, None, params, rows, 1.0)
    step = 1e-6
    for j in range(params.shape[0]):
        e = np.zeros_like(params)
        e[j] = step
        numeric = (loss_sums(X, y, None, params + e)[0] - loss_sums(X, y, None, params - e)[0]) / (2 * step)
        assert numeric == pytest.approx(gradient[j], rel=1e-6, abs=1e-6)


def test_relu_derivative_and_split_params():
    np.testing.assert_array_equal(relu_derivative(np.array([-1.0, 0.0, 2.0])), [0, 0.5, 1])
    coef, intercept = split_params(np.array([1.0, 2.0, 3.0]), 2)
    assert coef.tolist() == [1.0, 2.0] and intercept == 3.0
    coef, intercept = split_params(np.array([1.0, 2.0]), 2)
    assert coef.tolist() == [1.0, 2.0] and intercept == 0.0
