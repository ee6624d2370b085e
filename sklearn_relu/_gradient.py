"""The ReLU loss and its generalized gradient: the one place the math lives.

Model ``f(x) = max(0, <w, x> + b)``; loss ``1/(2 sum(s)) * sum_i s_i (f(x_i) - y_i)^2``
with sample weights ``s``. The generalized (Clarke) derivative of the ReLU is taken
as 1 for ``z > 0``, 0 for ``z < 0`` and 1/2 at ``z = 0``, so that the gradient at
``w = 0`` is ``-1/2`` times the mean of ``y_i x_i`` (REFERENCE §1, §2).

Parameters are passed as one flat vector ``params``: the ``n_features``
coefficients, followed by the intercept when ``fit_intercept`` is true.
"""

import numpy as np

__all__ = ["relu_derivative", "batch_gradient", "loss_sums", "split_params"]


def split_params(params, n_features):
    """``(coef, intercept)`` views of a flat parameter vector."""
    intercept = params[n_features] if params.shape[0] > n_features else 0.0
    return params[:n_features], intercept


def relu_derivative(z):
    """Generalized derivative of ``max(0, z)``: 1, 0, or 1/2 at exactly zero."""
    return (z > 0) + 0.5 * (z == 0)


def _linear(X, params):
    coef, intercept = split_params(params, X.shape[1])
    return X @ coef + intercept


def batch_gradient(X, y, sample_weight, params, rows, scale):
    """Weighted gradient contribution of ``rows`` of ``X``, times ``scale``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    sample_weight : ndarray of shape (n_samples,) or None
    params : ndarray of shape (n_features,) or (n_features + 1,)
        Coefficients, then the intercept if it is fitted.
    rows : ndarray of int
        Indices of the mini-batch (repeats allowed).
    scale : float
        Factor applied to the summed gradient, ``1 / batch_size`` for a mean.

    Returns
    -------
    gradient : ndarray, same shape and dtype as ``params``
    loss_sum : float
        ``sum_i s_i (f(x_i) - y_i)^2 / 2`` over the batch.
    weight_sum : float
        ``sum_i s_i`` over the batch.
    """
    X_batch = X[rows]
    y_batch = y[rows]
    z = _linear(X_batch, params)
    residual = np.maximum(z, 0) - y_batch
    weights = (
        np.ones_like(residual) if sample_weight is None else sample_weight[rows]
    )
    coefficient = (weights * residual * relu_derivative(z)).astype(X.dtype, copy=False)
    gradient = np.empty_like(params)
    n_features = X.shape[1]
    gradient[:n_features] = X_batch.T @ coefficient
    if params.shape[0] > n_features:
        gradient[n_features] = coefficient.sum()
    gradient *= scale
    loss_sum = 0.5 * float(weights @ residual**2)
    return gradient, loss_sum, float(weights.sum())


def loss_sums(X, y, sample_weight, params):
    """``(sum_i s_i (f(x_i) - y_i)^2 / 2, sum_i s_i)`` over all rows."""
    residual = np.maximum(_linear(X, params), 0) - y
    if sample_weight is None:
        return 0.5 * float(residual @ residual), float(X.shape[0])
    return 0.5 * float(sample_weight @ residual**2), float(sample_weight.sum())
