"""Initial points: the spectral start (one full gradient step from zero), zeros, random.

Statistics are computed per shard (``shard_*`` functions, run where the data lives,
by the ``worker_*`` statistics a backend calls on its workers) and summed by
whoever holds the shards, so the same code serves one process or many.
"""

import math
import numbers

import numpy as np

from ._gradient import _linear
from ._worker import shard_statistic

__all__ = [
    "shard_moments", "shard_line_search", "worker_moments", "worker_line_search",
    "initial_params", "INITS",
]

INITS = ("spectral", "zeros", "random")


def _weights(sample_weight, n):
    return np.ones(n) if sample_weight is None else sample_weight


def shard_moments(X, y, sample_weight, center=True):
    """``[X^T (s*y), X^T s, sum(s*y), sum(s)]`` on one shard, as one float64 vector.

    ``X^T s`` (the column sums, for centring) costs a pass over the shard of its
    own, and as many values again on the wire; without ``center`` it is left
    out: ``[X^T (s*y), sum(s*y), sum(s)]``.
    """
    s = _weights(sample_weight, X.shape[0]).astype(np.float64)
    # Overflow on absurd scales surfaces as inf here and is reported, with
    # advice, by the line search that consumes these sums.
    with np.errstate(over="ignore", invalid="ignore"):
        sy = s * y
        column_sums = [X.T @ s.astype(X.dtype)] if center else []
        return np.concatenate(
            [X.T @ sy.astype(X.dtype), *column_sums, [sy.sum(), s.sum()]]
        ).astype(np.float64, copy=False)


def shard_line_search(X, y, sample_weight, direction):
    """``[sum s*y*p, sum s*p^2, sum s*y^2, sum s]`` with
    ``p = max(0, <direction, x>)`` on one shard.

    The last two make the loss anywhere on the line known without another
    pass over ``X`` (:func:`_line_search`).
    """
    s = _weights(sample_weight, X.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.maximum(_linear(X, direction.astype(X.dtype, copy=False)), 0).astype(
            np.float64
        )
        y = y.astype(np.float64, copy=False)
        return np.array([s @ (y * p), s @ (p * p), s @ (y * y), float(np.sum(s))])


@shard_statistic
def worker_moments(worker, center):
    """:func:`shard_moments` of ``worker``'s shard."""
    return shard_moments(worker.X, worker.y, worker.sample_weight, center)


@shard_statistic
def worker_line_search(worker, direction):
    """:func:`shard_line_search` of ``worker``'s shard."""
    return shard_line_search(worker.X, worker.y, worker.sample_weight, direction)


def _line_search(reduce, direction):
    """Exact minimizer ``t >= 0`` of the loss along ``t * direction``
    (docs/theory.rst, "The start"), and the training loss there.

    For ``t > 0``, ``max(0, t<u, x>) = t max(0, <u, x>)``, so the loss is a quadratic
    in ``t``, ``(t^2 sum s p^2 - 2 t sum s y p + sum s y^2) / (2 sum s)``, with
    minimizer ``sum s y p / sum s p^2``. Its value at the minimizer is the start's
    loss, which the fit needs, without a pass over ``X`` of its own.

    Returns
    -------
    params : ndarray
    loss : float or None
        The weighted training loss at ``params``, as :func:`loss_sums` defines
        it; None when the sums give none.
    """
    yp, pp, yy, total_weight = reduce(worker_line_search, direction)
    if not (np.isfinite(yp) and np.isfinite(pp)):
        raise ValueError(
            "the initial line search overflowed: X or y is too large in magnitude "
            "for float arithmetic; rescale them (e.g. StandardScaler) before fitting "
            "(or, with Byzantine workers, use a robust aggregation)"
        )
    t = max(yp / pp if pp > 0 else 0.0, 0.0)
    # At the minimizer the quadratic cancels down to what the start leaves
    # unexplained; rounding must not make a near-perfect start's loss negative.
    unexplained = max(yy - t * yp, 0.0) if t > 0 else yy
    with np.errstate(all="ignore"):
        loss = 0.5 * unexplained / total_weight if total_weight > 0 else math.nan
    # Sums that make no loss (workers that lie about theirs, overflow) leave
    # the loss to a pass of its own, which reports what is wrong.
    return t * direction, float(loss) if math.isfinite(loss) else None


def initial_params(init, reduce, n_features, fit_intercept, random_state):
    """The starting parameter vector for ``init``.

    Parameters
    ----------
    init : {"spectral", "zeros", "random"} or array-like of shape (n_features,)
    reduce : callable
        ``reduce(statistic, *args)`` returns the sum over all shards of
        ``statistic(worker, *args)`` (:func:`worker_moments` or
        :func:`worker_line_search`).
    n_features : int
    fit_intercept : bool
    random_state : numpy.random.RandomState
        Used by ``init="random"`` only.

    Returns
    -------
    params : ndarray of shape (n_features + fit_intercept,), float64
    loss : float or None
        The weighted training loss at ``params`` where the start's own
        statistics give it (the spectral and random starts), else None.
    """
    n_params = n_features + int(fit_intercept)
    if not isinstance(init, str):
        params = np.zeros(n_params)
        params[:n_features] = init
        return params, None
    if init == "zeros":
        return np.zeros(n_params), None
    if init == "random":
        # A random direction, then the same exact line search: a random start at
        # the right scale, whatever the scale of X and y.
        direction = np.zeros(n_params)
        direction[:n_features] = random_state.standard_normal(n_features)
        return _line_search(reduce, direction)
    # Spectral: the first gradient step from zero points along X^T s y. With an
    # intercept, centre X first so that the direction is not dominated by the
    # mean of y, and let the intercept undo the centring.
    moments = reduce(worker_moments, fit_intercept)
    xty, sum_sy, sum_s = moments[:n_features], moments[-2], moments[-1]
    direction = np.zeros(n_params)
    if not (sum_s > 0 and math.isfinite(sum_s)):
        # The estimator checks every weight; honest shards report a positive
        # total. Only workers that lie (Byzantine, under a rule without
        # defence) report otherwise.
        raise ValueError(
            f"the spectral start cannot use the workers' sums: they report a total "
            f"sample weight of {sum_s:.3g}; with Byzantine workers use a robust "
            "aggregation (or init='zeros')"
        )
    if fit_intercept:
        x_mean = moments[n_features : 2 * n_features] / sum_s
        with np.errstate(over="ignore", invalid="ignore"):  # reported below
            direction[:n_features] = xty - x_mean * sum_sy
            direction[n_features] = -direction[:n_features] @ x_mean
    else:
        direction[:n_features] = xty
    return _line_search(reduce, direction)


def check_init(init, n_features):
    """Validate ``init``; return it as a string or a float64 array."""
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(
                f"init must be one of {INITS} or an array of shape (n_features,), "
                f"got {init!r}"
            )
        return init
    if isinstance(init, numbers.Number):
        raise ValueError(
            f"init must be one of {INITS} or an array of shape (n_features,), "
            f"got {init!r}"
        )
    array = np.asarray(init, dtype=np.float64)
    if array.shape != (n_features,):
        raise ValueError(
            f"init array has shape {array.shape}, expected ({n_features},)"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("init array contains NaN or infinity")
    return array
