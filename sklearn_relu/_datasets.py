"""The planted ReLU model of the paper, as a data generator."""

import numbers

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["make_relu_regression"]


def make_relu_regression(
    n_samples=100, n_features=10, *, noise=0.0, coef=False, random_state=None
):
    """Generate data from a planted ReLU: ``y = max(0, <w*, x>) + noise``.

    ``x ~ N(0, I)`` and ``w* ~ N(0, I)``, as in the paper's experiments.

    Parameters
    ----------
    n_samples : int, default=100
        Number of rows, at least 1.
    n_features : int, default=10
        Number of features ``d``, at least 1.
    noise : float, default=0.0
        Standard deviation of Gaussian noise added to ``y``, non-negative.
    coef : bool, default=False
        Whether to also return ``w*``.
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible output.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    coef : ndarray of shape (n_features,)
        The planted ``w*``; only returned when ``coef=True``.

    Examples
    --------
    >>> from sklearn_relu import make_relu_regression
    >>> X, y, w = make_relu_regression(n_samples=5, n_features=3, coef=True,
    ...                                random_state=0)
    >>> X.shape, y.shape, w.shape
    ((5, 3), (5,), (3,))
    >>> bool((y >= 0).all())
    True
    """
    for name, value in (("n_samples", n_samples), ("n_features", n_features)):
        if not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(noise, numbers.Real) or not noise >= 0:
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    rng = check_random_state(random_state)
    w_star = rng.standard_normal(n_features)
    X = rng.standard_normal((n_samples, n_features))
    y = np.maximum(X @ w_star, 0.0)
    if noise > 0:
        y = y + noise * rng.standard_normal(n_samples)
    return (X, y, w_star) if coef else (X, y)
