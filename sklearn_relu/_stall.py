"""Parameters a fit could barely move: the check behind the "stopped far from a
minimum" warning (docs/user_guide.rst, "Standardize the features").

SGD moves every parameter with one step size, which the parameter of largest
curvature sets: along parameter ``j`` a step shrinks the distance to the
minimum by about a factor ``1 - step * H_j``, with ``H_j`` the second
derivative of the mean loss along ``j``. Where ``step * H_j * t < 1`` after
``t`` steps, parameter ``j`` has not yet made one e-fold of its way: it
stalled. Beside a parameter that made ten e-folds or more in the same run (the
run was long enough, and that parameter's curvature set the step), that
happens when features differ in scale by orders of magnitude
(curvature goes with a feature's square), and the fit's own stopping rule,
which watches the loss, cannot see it: the loss falls too slowly to tell a
plateau from a stall.

Whether a stall matters is read from the loss along each stalled parameter
alone: a quadratic with slope ``g_j`` and curvature ``h_j`` falls by
``g_j**2 / (2 h_j)`` at its minimum. The slope is measured on a sample of
rows, where even at the minimum its square has the mean ``v_j`` (the sum of
the rows' squared terms): ``g_j**2 - v_j`` estimates the square of the slope
itself, and a slope whose square a noise-only slope could reach (the largest
of as many noise-only slopes as there are parameters) is not counted.
Parameters are judged one at a time, their gains not added: correlated
columns would count one gain several times, and the noise of hundreds of
stalled columns would add up.
"""

import numpy as np

from ._gradient import relu_derivative, split_params
from ._sparse import issparse

__all__ = ["progress_sums", "sample_rows", "stalled_parameters", "SAMPLE_ROWS"]

#: Rows of each worker's shard that the check reads, spread evenly.
SAMPLE_ROWS = 2048
#: The e-folds the fastest parameter must have made for a verdict: stalls are
#: read beside parameters that had the time to settle.
_SETTLED = 10
#: Bytes of float64 rows converted at a time (at least 16 rows): the check
#: adds no more than a few of these to a fit's memory.
_BLOCK_BYTES = 64 << 10


def sample_rows(n_rows):
    """Up to :data:`SAMPLE_ROWS` row indices spread evenly over ``n_rows``."""
    return np.unique(np.linspace(0, n_rows - 1, min(n_rows, SAMPLE_ROWS)).astype(np.intp))


def _parts(sums):
    """``g, h, v`` (views, one value a parameter), ``loss`` and ``weight`` of
    a :func:`progress_sums` vector."""
    n_params = (sums.shape[0] - 2) // 3
    g, h, v = (sums[k * n_params : (k + 1) * n_params] for k in range(3))
    return g, h, v, sums[-2], sums[-1]


def progress_sums(X, y, sample_weight, params, rows):
    """On the rows ``rows``: ``[g, h, v, loss, weight]`` as one float64 vector,
    each of ``g, h, v`` with one value a parameter (the coefficients, then the
    intercept's when ``params`` has one, whose column is all ones).

    With ``z_i`` the linear part, ``a_i = relu'(z_i)``, ``r_i = max(z_i, 0) -
    y_i`` and weights ``s_i``: ``g_j = sum_i s_i r_i a_i x_ij`` (the loss's
    slope along parameter ``j``), ``h_j = sum_i s_i a_i x_ij**2`` (its
    curvature), ``v_j = sum_i (s_i r_i a_i x_ij)**2`` (the slope's sampling
    variance), ``loss = sum_i s_i r_i**2 / 2`` and ``weight = sum_i s_i``.
    """
    n_features = X.shape[1]
    coef, intercept = split_params(np.asarray(params, dtype=np.float64), n_features)
    with_intercept = params.shape[0] > n_features
    sums = np.zeros(3 * params.shape[0] + 2)
    g, h, v, _, _ = _parts(sums)
    block = max(16, _BLOCK_BYTES // (8 * max(1, n_features)))
    if issparse(X):
        # A sparse block holds its rows' entries, and each makes three
        # vectors of n_features: rows of a quarter as many entries.
        width = max(1.0, X.nnz / max(1, X.shape[0]))
        block = max(16, int(max(_BLOCK_BYTES // 8, n_features // 4) / width))
    for start in range(0, rows.shape[0], block):
        chosen = rows[start : start + block]
        X_block = X[chosen].astype(np.float64, copy=False)  # a copy, squared below
        s = (
            np.ones(chosen.shape[0]) if sample_weight is None
            else np.asarray(sample_weight[chosen], dtype=np.float64)
        )
        z = X_block @ coef + intercept
        active = relu_derivative(z)
        residual = np.maximum(z, 0) - np.asarray(y[chosen], dtype=np.float64)
        slope = s * residual * active
        if issparse(X_block):  # the rows' entries only (a sparse copy)
            g[:n_features] += X_block.T @ slope
            squares = X_block.multiply(X_block).T
            h[:n_features] += squares @ (s * active)
            v[:n_features] += squares @ (slope * slope)
        else:
            g[:n_features] += slope @ X_block
            squares = np.square(X_block, out=X_block)  # the block is a copy: reuse it
            h[:n_features] += (s * active) @ squares
            v[:n_features] += (slope * slope) @ squares
        if with_intercept:
            g[n_features] += slope.sum()
            h[n_features] += (s * active).sum()
            v[n_features] += (slope * slope).sum()
        sums[-2] += 0.5 * s @ (residual * residual)
        sums[-1] += s.sum()
    return sums


def stalled_parameters(sums, step, steps):
    """What the fit left on the table along each parameter it stalled on.

    Parameters
    ----------
    sums : ndarray
        :func:`progress_sums`, summed over the workers.
    step : float
        The step size the fit used (``learning_rate_``, a constant step: a
        sign method's halving step is a distance, and this does not apply).
    steps : int
        The steps it took.

    Returns
    -------
    shares : ndarray
        For each parameter, the share of the sample's loss that moving it
        alone would remove, its slope's sampling variance deducted; 0 where
        the parameter did not stall, or where no verdict is possible (no
        loss, non-finite sums, or a run too short for every parameter). Each
        is a parameter alone: correlated parameters would count the same
        gain twice, so shares are not added.
    fastest : int
        The parameter that made the most progress, whose curvature set the
        step.
    """
    g, h, v, loss, weight = _parts(sums)
    n_params = g.shape[0]
    shares = np.zeros(n_params)
    if not (loss > 0 and weight > 0 and np.all(np.isfinite(sums))):
        return shares, 0
    progress = step * (h / weight) * steps  # e-folds made along each parameter
    fastest = int(np.argmax(progress))
    if not progress[fastest] >= _SETTLED:
        # Too short a run for any parameter: not a matter of scales (the
        # max_iter warning, or the caller's tol=None, covers it).
        return shares, fastest
    # A slope counts where its square is beyond what the largest of n_params
    # noise-only slopes reaches (g^2 / v is then a chi-square of one degree
    # of freedom, whose maximum over p draws is about 2 ln p), with a margin.
    significant = g**2 > (10 + 2 * np.log(n_params)) * v
    stalled = (h > 0) & (progress < 1) & significant
    shares[stalled] = (g[stalled] ** 2 - v[stalled]) / (2 * h[stalled]) / loss
    return shares, fastest
