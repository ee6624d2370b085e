"""The ReLU loss and its generalized gradient: the one place the math lives.

Model ``f(x) = max(0, <w, x> + b)``; loss ``1/(2 sum(s)) * sum_i s_i (f(x_i) - y_i)^2``
with sample weights ``s``. The generalized (Clarke) derivative of the ReLU is taken
as 1 for ``z > 0``, 0 for ``z < 0`` and 1/2 at ``z = 0``, so that the gradient at
``w = 0`` is ``-1/2`` times the mean of ``y_i x_i`` (docs/theory.rst,
"The model and its loss" and "The start").

Parameters are passed as one flat vector ``params``: the ``n_features``
coefficients, followed by the intercept when ``fit_intercept`` is true.

:func:`batch_gradient_reference` is the mini-batch gradient written out (gather
the batch, two matrix-vector products); the tests hold the fast path to it.
:func:`batch_gradient` is the fast path: the C kernel or NumPy, on one thread
or two, as :mod:`._parallel` runs it (:data:`KERNEL` says which).
"""

import numpy as np

# KERNEL (which fast path runs) stays importable from here, beside the gradient.
from . import _parallel, _sparse
from ._parallel import KERNEL

__all__ = [
    "KERNEL",
    "relu_derivative",
    "batch_gradient",
    "batch_gradient_numpy",
    "batch_gradient_reference",
    "loss_sums",
    "split_params",
]


def split_params(params, n_features):
    """``(coef, intercept)`` views of a flat parameter vector."""
    intercept = params[n_features] if params.shape[0] > n_features else 0.0
    return params[:n_features], intercept


def relu_derivative(z):
    """Generalized derivative of ``max(0, z)``: 1, 0, or 1/2 at exactly zero."""
    return (z > 0) + 0.5 * (z == 0)


def _linear(X, params):
    coef, intercept = split_params(params, X.shape[1])
    # In the dtype of X: float64 coefficients would make NumPy convert a
    # float32 X to a float64 copy (twice its size) for the product.
    return X @ coef.astype(X.dtype, copy=False) + X.dtype.type(intercept)


def batch_gradient_reference(X, y, sample_weight, params, rows, scale):
    """The mini-batch gradient written out plainly; see :func:`batch_gradient`.

    Kept as the reference the fast path is tested against.
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


def batch_gradient(X, y, sample_weight, params, rows, scale, *, n_threads=None):
    """Weighted gradient contribution of ``rows`` of ``X``, times ``scale``.

    Computed in the dtype of ``X`` (float32 stays float32) without materializing
    the batch, by the C kernel when it is built and ``X`` has contiguous rows
    or is CSR (see :data:`KERNEL`), else by :func:`batch_gradient_numpy`. On
    CSR rows the kernel adds the sorted rows' entries one row after another,
    on one thread.

    Parameters
    ----------
    X : ndarray or CSR matrix of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    sample_weight : ndarray of shape (n_samples,) or None
    params : ndarray of shape (n_features,) or (n_features + 1,)
        Coefficients, then the intercept if it is fitted.
    rows : ndarray of int
        Indices of the mini-batch (repeats allowed), each in ``[0, n_samples)``.
    scale : float
        Factor applied to the summed gradient, ``1 / batch_size`` for a mean.
    n_threads : int or None, default=None
        Threads to split a large batch across; ``None`` uses
        :data:`~._parallel.N_THREADS`.

    Returns
    -------
    gradient : ndarray, same shape as ``params``, in the dtype of ``X``
    loss_sum : float
        ``sum_i s_i (f(x_i) - y_i)^2 / 2`` over the batch.
    weight_sum : float
        ``sum_i s_i`` over the batch.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 2.0], [3.0, -1.0]]); y = np.array([1.0, 0.0])
    >>> gradient, loss, weight = batch_gradient(
    ...     X, y, None, np.array([1.0, 0.0]), np.array([0, 1, 1]), scale=1 / 3)
    >>> gradient.tolist(), loss, weight
    ([6.0, -2.0], 9.0, 3.0)
    """
    rows, n_threads = _parallel._sorted_batch(X, rows, n_threads)
    coef, intercept = split_params(params, X.shape[1])
    with_intercept = params.shape[0] > X.shape[1]
    kernel = _parallel._kernels is not None and _parallel._kernel_layout(X)
    if _sparse.issparse(X):
        compute = (
            _parallel._batch_gradient_csr_kernel if kernel
            else _sparse.batch_gradient_numpy
        )
    else:
        compute = (
            _parallel._batch_gradient_kernel if kernel
            else _parallel._batch_gradient_numpy
        )
    return compute(
        X, y, sample_weight, coef, intercept, with_intercept, rows, scale, n_threads
    )


def batch_gradient_numpy(X, y, sample_weight, params, rows, scale, *, n_threads=None):
    """:func:`batch_gradient` by NumPy and BLAS alone (no compiled kernel).

    The sorted rows are gathered one cache-sized block at a time into a reused
    buffer, and each block is used for both matrix-vector products before the
    next is read. Same parameters and results as :func:`batch_gradient`.
    """
    rows, n_threads = _parallel._sorted_batch(X, rows, n_threads)
    coef, intercept = split_params(params, X.shape[1])
    numpy_path = (
        _sparse.batch_gradient_numpy if _sparse.issparse(X)
        else _parallel._batch_gradient_numpy
    )
    return numpy_path(
        X, y, sample_weight, coef, intercept, params.shape[0] > X.shape[1], rows,
        scale, n_threads,
    )


def loss_sums(X, y, sample_weight, params):
    """``(sum_i s_i (f(x_i) - y_i)^2 / 2, sum_i s_i)`` over all rows."""
    # The product in the dtype of X (no copy of X); the sums in float64.
    residual = (np.maximum(_linear(X, params), 0) - y).astype(np.float64)
    if sample_weight is None:
        return 0.5 * float(residual @ residual), float(X.shape[0])
    return 0.5 * float(sample_weight @ residual**2), float(sample_weight.sum())
