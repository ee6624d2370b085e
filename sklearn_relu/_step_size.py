"""The data-driven step size of ``learning_rate="auto"`` (derived here; docs/theory.rst,
"Mini-batch SGD and the automatic step").

Near a solution the expected mini-batch gradient is ``H (w - w*)`` with
``H = E[relu'(z) x x^T]``, and its second moment is about
``(w - w*)^T (H^2 + R H / m) (w - w*)``, ``R`` the mean squared row norm over the
active rows (weighted by ``s^2``: a drawn row's gradient carries its weight)
and ``m`` the batch size. Rows inactive at the start may become active later
(a heavy row with ``y = 0`` that the model first ignores), so ``R`` is the
larger of that mean over the active rows and over all rows. The step
``1 / (lambda_max(H) + R / m)`` is then half the largest stable step in every
direction; on standardized Gaussian data (``lambda = 1/2``, ``R = d``) it is
exactly ``2m / (m + 2d)``.

A compressor adds variance ``delta ||g_w||^2`` to worker ``w``'s message,
``delta`` its variance factor. Summed over ``W`` workers whose shares of the
batch are independent, ``sum_w E||g_w||^2 = ||E g||^2 / W + Var(g)``: the
compressed sum's second moment is
``(1 + delta / W) ||E g||^2 + (1 + delta) Var(g)``. The curvature term is
divided by ``W`` but the sampling noise is not (each worker's ``m / W`` rows
are ``W`` times noisier), so the largest stable step is
``2 / ((1 + delta / W) lambda_max(H) + (1 + delta) R / m)``.

SGD's step keeps a margin of two against its limit. The margin is wider than
the noise of a fit needs (on the planted model at d = 4000, m = 1000, SGD
reached 1e-6 in the fewest steps at 1.6 times its step and still converged
at twice it), so a compressor's noise may use a quarter of it: the step is
SGD's while that stays within two thirds of the compressed fit's limit, and
two thirds of that limit beyond. Compressors with little noise (8-bit QSGD
and IntSGD at 16 workers, ``delta`` about 0.2) then take SGD's step and its
number of steps, and noisy ones (``delta`` of several) a third more than
half their limit (docs/theory.rst, "The step under compression").
"""

import numpy as np

from . import _sparse
from ._gradient import _linear, relu_derivative
from ._worker import shard_statistic

__all__ = [
    "auto_learning_rate",
    "largest_stable_step",
    "measure_curvature",
    "shard_curvature",
    "shard_hessian_matvec",
    "worker_curvature",
    "worker_hessian_matvec",
]

_POWER_ITERATIONS = 8


def _active_weights(X, sample_weight, params):
    a = relu_derivative(_linear(X, params.astype(X.dtype, copy=False)))
    return a if sample_weight is None else a * sample_weight


def shard_curvature(X, sample_weight, params):
    """``[sum s^2 a ||x~||^2, sum s a, sum s, sum s^2 ||x~||^2]`` on one shard.

    ``a`` is the ReLU derivative at ``params``; ``x~`` has a 1 for the intercept.
    A drawn row's gradient is scaled by its weight ``s``, so its second moment,
    the noise the step must tolerate, grows with ``s^2``: skewed weights need
    a smaller step than their mean suggests.
    """
    active = relu_derivative(_linear(X, params.astype(X.dtype, copy=False)))
    row_norms = (
        _sparse.row_norms(X) if _sparse.issparse(X)
        else np.einsum("ij,ij->i", X, X, dtype=np.float64)
    )
    if params.shape[0] > X.shape[1]:
        row_norms += 1.0
    if sample_weight is None:
        return np.array(
            [active @ row_norms, active.sum(), X.shape[0], row_norms.sum()],
            dtype=float,
        )
    s = sample_weight.astype(np.float64)
    return np.array([(active * s * s) @ row_norms, active @ s, s.sum(), (s * s) @ row_norms])


def shard_hessian_matvec(X, sample_weight, params, vector):
    """``sum_i s_i a_i x~_i x~_i^T vector`` on one shard."""
    weights = _active_weights(X, sample_weight, params)
    projected = weights * _linear(X, vector.astype(X.dtype, copy=False))
    out = np.empty(vector.shape[0])
    out[: X.shape[1]] = X.T @ projected.astype(X.dtype, copy=False)
    if vector.shape[0] > X.shape[1]:
        out[X.shape[1]] = projected.sum()
    return out


@shard_statistic
def worker_curvature(worker, params):
    """:func:`shard_curvature` of ``worker``'s shard."""
    return shard_curvature(worker.X, worker.sample_weight, params)


@shard_statistic
def worker_hessian_matvec(worker, params, vector):
    """:func:`shard_hessian_matvec` of ``worker``'s shard, in float32."""
    # The power iteration needs a few digits of the largest eigenvalue, not
    # sixteen: float32 halves what the start sends (8 vectors of d values).
    return shard_hessian_matvec(
        worker.X, worker.sample_weight, params, vector
    ).astype(np.float32)


def measure_curvature(reduce, params, random_state, summed=True):
    """``(lambda_max(H), R)`` at ``params``: the two data terms of the step.

    Parameters
    ----------
    reduce : callable
        ``reduce(statistic, *args)`` sums a shard statistic
        (:func:`worker_curvature`, :func:`worker_hessian_matvec`) over all
        shards.
    params : ndarray
        The point where the curvature is measured (the initial point).
    random_state : numpy.random.RandomState
        Start vector of the power iteration.
    summed : bool, default=True
        Whether ``reduce`` sums the shards' statistics (the mean's rule): the
        Hessian products are then those of a positive semi-definite matrix,
        and a negative eigenvalue can only come from workers that lie. A
        robust rule's combination (``n`` times a median, say) is not of one,
        and a negative eigenvalue there is taken as 0.
    """
    weighted_norms, active, total, all_norms = reduce(worker_curvature, params)
    if active <= 0:
        # No active row at params: measure at zero instead, where every
        # derivative is 1/2, so that the step stays finite and meaningful.
        params = np.zeros_like(params)
        weighted_norms, active, total, all_norms = reduce(worker_curvature, params)
    if not (active > 0 and total > 0):
        # Honest shards always report rows, and at zero all of them active:
        # only workers that lie (Byzantine, under a rule without defence)
        # report otherwise.
        raise ValueError(
            "learning_rate='auto' cannot measure a curvature: the workers report "
            f"{total:.3g} rows, {active:.3g} of them active; with Byzantine workers "
            "use a robust aggregation, or give a learning_rate"
        )
    mean_row_norm = max(weighted_norms / active, all_norms / total)
    if mean_row_norm < 0:
        raise ValueError(
            f"learning_rate='auto' cannot measure a curvature: the workers report "
            f"a negative mean squared row norm ({mean_row_norm:.3g}); with Byzantine "
            "workers use a robust aggregation, or give a learning_rate"
        )
    vector = random_state.standard_normal(params.shape[0])
    eigenvalue = 0.0
    for _ in range(_POWER_ITERATIONS):
        vector /= np.linalg.norm(vector)
        image = reduce(worker_hessian_matvec, params, vector).astype(np.float64) / total
        eigenvalue = float(vector @ image)
        vector = image
        if not np.any(vector):
            break
    if summed and eigenvalue < 0 and not -eigenvalue <= 1e-3 * abs(mean_row_norm):
        # H is positive semi-definite: beyond float32 rounding, a negative
        # Rayleigh quotient comes only from workers that lie.
        raise ValueError(
            f"learning_rate='auto' cannot measure a curvature: the workers' "
            f"Hessian products give a negative eigenvalue ({eigenvalue:.3g}); with "
            "Byzantine workers use a robust aggregation, or give a learning_rate"
        )
    eigenvalue = max(eigenvalue, 0.0)
    if not (eigenvalue + mean_row_norm > 0 and np.isfinite(eigenvalue + mean_row_norm)):
        raise ValueError(
            "learning_rate='auto' cannot measure a curvature: every row of X is "
            "zero or X is not finite at this scale; rescale X or give a learning_rate"
        )
    return eigenvalue, float(mean_row_norm)


#: The share of a compressed fit's largest stable step that its step may take.
#: SGD's takes 1/2 of its own; a compressor's noise may use a quarter of
#: SGD's margin, the step staying at or below SGD's.
COMPRESSED_STABILITY_SHARE = 2.0 / 3.0


def largest_stable_step(curvature, batch_size, variance_factor=0.0, n_workers=1):
    """``2 / ((1 + delta / W) lambda_max(H) + (1 + delta) R / m)``: the largest
    step at which a fit with the compressor's variance factor ``delta`` stays
    stable (see the module documentation); SGD's is ``delta = 0``.

    Examples
    --------
    >>> largest_stable_step((0.5, 400), 200)   # 2 / (1/2 + 400/200)
    0.8
    """
    eigenvalue, mean_row_norm = curvature
    return 2.0 / (
        eigenvalue * (1.0 + variance_factor / n_workers)
        + mean_row_norm / batch_size * (1.0 + variance_factor)
    )


def auto_learning_rate(curvature, batch_size, variance_factor=0.0, n_workers=1):
    """``min(1 / (lambda + R / m), (2/3) 2 / ((1 + delta / W) lambda + (1 + delta) R / m))``.

    The first term is SGD's step, half its largest stable step; the second
    two thirds of the compressed fit's largest stable step
    (:data:`COMPRESSED_STABILITY_SHARE`), ``lambda = lambda_max(H)``.

    Parameters
    ----------
    curvature : tuple of float
        ``(lambda_max(H), R)`` from :func:`measure_curvature`.
    batch_size : int
        ``m``, the points per step over all workers.
    variance_factor : float, default=0.0
        ``delta``: the compressor's added variance relative to a message's
        squared norm (0 for exact SGD).
    n_workers : int, default=1
        ``W``, the workers whose messages are summed.

    Examples
    --------
    >>> d, m = 400, 200   # standardized Gaussian data: lambda = 1/2, R = d
    >>> round(auto_learning_rate((0.5, d), m), 6) == round(2 * m / (m + 2 * d), 6)
    True
    >>> sgd = auto_learning_rate((0.5, d), m)
    >>> auto_learning_rate((0.5, d), m, variance_factor=0.2, n_workers=16) == sgd
    True
    >>> round(auto_learning_rate((0.5, d), m, variance_factor=9, n_workers=16) / sgd, 3)
    0.16
    """
    sgd = largest_stable_step(curvature, batch_size) / 2
    if variance_factor == 0:
        return sgd
    stable = largest_stable_step(curvature, batch_size, variance_factor, n_workers)
    return min(sgd, COMPRESSED_STABILITY_SHARE * stable)
