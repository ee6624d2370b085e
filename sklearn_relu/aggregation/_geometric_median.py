"""The geometric median by smoothed Weiszfeld iterations (Pillutla, Kakade,
Harchaoui, "Robust aggregation for federated learning", IEEE TSP 2022)."""

import numbers

import numpy as np

from ._base import RobustAggregator

__all__ = ["GeometricMedian", "geometric_median"]


def _robust_origin(gram):
    """Index of the point with the smallest sum of distances to the others
    (the medoid), from the Gram matrix of the points."""
    squared = gram.diagonal()
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * gram, 0))
    return int(np.argmin(distances.sum(axis=1)))


def geometric_median(points, *, nu=1e-6, max_iter=100, tol=1e-6):
    """The point minimizing ``sum_i ||z - x_i||``, by smoothed Weiszfeld.

    Each iteration replaces ``z`` by ``sum_i a_i x_i / sum_i a_i`` with
    ``a_i = 1 / max(nu * s, ||z - x_i||)``, where ``s`` is the median distance
    of the points from their medoid (when it is 0, at least half the points
    are the medoid, which is then returned): the smoothing and the tolerance are
    relative to the honest points' spread, so that the result scales with the
    points (gradients shrink a million-fold during a fit). The iterations
    start at the medoid and run in the ``n``-dimensional space of weights on
    the points, from their Gram matrix: one ``O(n^2 d)`` product, then
    ``O(n^2)`` an iteration. They stop when an iteration moves ``z`` by at
    most ``tol * s``, or after ``max_iter``.

    Parameters
    ----------
    points : ndarray of shape (n_points, n_features)
    nu : float, default=1e-6
        Smoothing, relative to the spread ``s``: distances below ``nu * s``
        count as ``nu * s``.
    max_iter : int, default=100
    tol : float, default=1e-6

    Returns
    -------
    median : ndarray of shape (n_features,)

    Examples
    --------
    >>> import numpy as np
    >>> points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [100.0, 100.0]])
    >>> np.round(geometric_median(points), 3)   # the outlier barely moves it
    array([0.5, 0.5])
    """
    points = np.asarray(points, dtype=np.float64)
    raw_gram = points @ points.T
    origin = points[_robust_origin(raw_gram)]
    # Distances from the Gram matrix lose ~sqrt(eps) of the points' norms to
    # cancellation: centred on the medoid, those norms are the spread itself.
    centred = points - origin
    largest = float(np.max(np.abs(centred), initial=0.0))
    if largest == 0:
        return origin.copy()
    # At unit scale, by an exact power of two (so the same bits wherever the
    # squares neither underflow nor overflow): the squared distances of tiny
    # vectors would underflow to zero and divide by zero below, and those of
    # huge ones overflow.
    exponent = int(np.frexp(largest)[1])
    centred = np.ldexp(centred, -exponent)
    gram = centred @ centred.T
    squared = np.maximum(gram.diagonal(), 0)
    scale = float(np.sqrt(_median(squared)))
    if scale == 0:
        # At least half the points are the medoid: it is a geometric median
        # (their unit ball of subgradients holds the others' pull).
        return origin.copy()
    # Never zero: a spread of 1e-160 squares to below float64's smallest.
    floor_squared = max((nu * scale) ** 2, np.finfo(np.float64).tiny)
    enough = (tol * scale) ** 2
    # z = origin + weights @ centred. From the medoid itself the smoothed
    # weights barely move (its own weight is 1 / floor): start one clipped
    # step away, every point within the spread weighing alike.
    weights = 1.0 / np.maximum(np.sqrt(squared), scale)
    weights /= weights.sum()
    # Few points, so NumPy's per-call overhead is the cost: an iteration
    # reuses G w for the move of the previous one, |w' - w|_G^2 =
    # w'Gw' - 2 w Gw' + wGw.
    image = gram @ weights
    quadratic = weights @ image
    for _ in range(max_iter):
        inverse = 1.0 / np.sqrt(
            np.maximum(squared - 2 * image + quadratic, floor_squared)
        )
        new = inverse / inverse.sum()
        new_image = gram @ new
        new_quadratic = new @ new_image
        move = new_quadratic - 2 * (weights @ new_image) + quadratic
        weights, image, quadratic = new, new_image, new_quadratic
        if move <= enough:
            break
    return origin + np.ldexp(weights @ centred, exponent)


def _median(values):
    """``np.median`` of a short 1-D array, without its overhead."""
    ordered = np.sort(values)
    n = ordered.shape[0]
    return 0.5 * (ordered[(n - 1) // 2] + ordered[n // 2])


class GeometricMedian(RobustAggregator):
    """The geometric median of the workers' vectors (RFA's robust aggregate).

    The point with the smallest sum of Euclidean distances to the workers'
    vectors, computed by smoothed Weiszfeld iterations
    (:func:`geometric_median`). Breakdown point 1/2: with ``f < n/2``
    Byzantine vectors it stays within ``2 (n - f) / (n - 2 f)`` times the
    honest vectors' radius of their own geometric median, wherever the
    Byzantine vectors are.

    Parameters
    ----------
    nu : float, default=1e-6
        Smoothing of the Weiszfeld weights, relative to the vectors' spread.
    max_iter : int, default=100
        Weiszfeld iterations at most.
    tol : float, default=1e-6
        Stop when an iteration moves the estimate by less than ``tol`` times
        the vectors' spread.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import GeometricMedian
    >>> from sklearn_relu.compression import Identity
    >>> honest = [np.array([1.0, 1.0]), np.array([1.1, 0.9]), np.array([0.9, 1.1])]
    >>> liar = [np.array([-400.0, -400.0])]
    >>> direction = GeometricMedian().aggregate(honest + liar, Identity())
    >>> np.round(direction / 4, 2)   # the centre, times the 4 workers
    array([1., 1.])
    """

    def __init__(self, nu=1e-6, max_iter=100, tol=1e-6):
        for name, value in (("nu", nu), ("tol", tol)):
            if not (isinstance(value, numbers.Real) and 0 < value < 1):
                raise ValueError(f"{name} must be a float in (0, 1), got {value!r}")
        if not isinstance(max_iter, numbers.Integral) or isinstance(max_iter, bool) \
                or max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        self.nu, self.max_iter, self.tol = nu, max_iter, tol

    def _parameters(self):
        return {"nu": self.nu, "max_iter": self.max_iter, "tol": self.tol}

    def center(self, points):
        return geometric_median(points, nu=self.nu, max_iter=self.max_iter, tol=self.tol)
