"""The geometric median by smoothed Weiszfeld iterations (Pillutla, Kakade,
Harchaoui, "Robust aggregation for federated learning", IEEE TSP 2022)."""

import math
import numbers

import numpy as np

from ._base import RobustAggregator

__all__ = [
    "GeometricMedian",
    "centred_gram",
    "centred_squares",
    "geometric_median",
    "gram_about_the_medoid",
    "rough_median",
]

#: Multiples of the Weiszfeld step tried each iteration: the one with the
#: smallest sum of distances is taken. 1 is Weiszfeld's (a descent step);
#: longer ones (Ostresh's over-relaxation, and beyond) pay where the
#: iterations crawl, as near a point sent several times.
_STEP_MULTIPLES = np.array([1.0, 1.5, 2.0, 3.0, 4.5])


def _distances(gram):
    """The matrix of distances between points, from their Gram matrix."""
    squared = gram.diagonal()
    return np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * gram, 0))


def times_power_of_two(values, exponent, out=None):
    """``np.ldexp(values, exponent)``, bit for bit, at the price of a product.

    A product by ``2**exponent`` is one correctly rounded operation on the
    exact result, as ``ldexp`` is, whenever the factor itself is a double
    (``-1074 <= exponent <= 1023``); NumPy's ``ldexp`` is a library call an
    element, several times slower than a vectorized product (see the
    aggregation timings in :doc:`/benchmarks`)."""
    if exponent == 0 and (out is None or out is values):
        return values
    if -1074 <= exponent <= 1023:
        return np.multiply(values, np.ldexp(1.0, exponent), out=out)
    return np.ldexp(values, exponent, out=out)


def _largest_magnitude(points):
    """``max |points|`` (0 for none, NaN if any is), without an array of
    magnitudes."""
    if points.size == 0:
        return 0.0
    return max(float(points.max()), -float(points.min()))


def _robust_origin(points):
    """Index of a point with the smallest sum of distances to the others (the
    medoid). From the Gram matrix of the points scaled by a power of two, so
    that no product overflows whatever their magnitude.

    The scale only moves the range of the products: where the points'
    largest square is within ``2^+-80`` of 1, so that no product or sum of
    them can overflow, the Gram matrix of the points themselves is the scaled
    one times an exact power of two, and so are the distances: the same
    medoid, without the scaled copy of the points (but for products below
    ``2^-1022``, ``2^-900`` times the largest, which no sum of distances
    notices). A point that is not finite (a Byzantine overflow) is never
    the medoid: it is taken among the others."""
    with np.errstate(over="ignore", invalid="ignore"):
        gram = points @ points.T
    top = float(np.max(gram.diagonal(), initial=0.0))
    if not 2.0**-80 <= top <= 2.0**80:
        largest = _largest_magnitude(points)
        if not largest < np.inf:
            finite = np.flatnonzero(np.all(np.isfinite(points), axis=1))
            if finite.shape[0] == 0:
                return 0
            return int(finite[_robust_origin(points[finite])])
        if not largest > 0:
            return 0
        scaled = times_power_of_two(points, -int(np.frexp(largest)[1]))
        gram = scaled @ scaled.T
    return int(np.argmin(_distances(gram).sum(axis=1)))


def _is_median(gram, distances, index, duplicates):
    """Whether point ``index`` is a geometric median: the unit vectors
    towards the other points sum to at most its multiplicity
    ``duplicates`` (the subgradient condition at a data point)."""
    others = distances[index] > 0
    others[index] = False
    inverse = np.where(others, 1.0 / np.where(others, distances[index], 1.0), 0.0)
    own = gram[index]
    # |sum_i c_i (x_i - x_k)|^2 from the Gram matrix of the points.
    total = inverse.sum()
    pull = inverse @ gram @ inverse - 2 * total * (inverse @ own) + total**2 * own[index]
    return pull <= duplicates**2


def centred_gram(points):
    """The points centred on their medoid and scaled, with their Gram matrix.

    Returns ``(origin, centred, gram, exponent)``: ``points[i]`` is ``origin +
    2**exponent * centred[i]`` (but for points brought in, below), ``gram =
    centred @ centred.T``. Distances from a Gram matrix lose ~sqrt(eps) of the
    points' norms to cancellation: centred on the medoid, those norms are the
    spread itself. The scale is an exact power of two (so the same bits
    wherever the squares neither underflow nor overflow); where the points'
    own squares neither do, nor is any point far (below), it is 1 and the
    points are not scaled at all. A point more than ``2^400`` times the
    typical distance from the medoid is brought in along its ray to that
    distance, so that no square overflows whatever the magnitudes sent. When
    more than half the points are the medoid, ``gram`` is None.
    """
    return _centre_on_the_medoid(points, _gram)


def centred_squares(points):
    """As :func:`centred_gram`, with the squared norms of the centred points
    (the diagonal of the Gram matrix, ``O(n d)`` instead of ``O(n^2 d)``) in
    place of the Gram matrix: ``(origin, centred, squares, exponent)``."""
    return _centre_on_the_medoid(points, _row_squares)


def _gram(centred):
    gram = centred @ centred.T
    return gram, gram.diagonal()


def _row_squares(centred):
    squares = np.einsum("ij,ij->i", centred, centred)
    return squares, squares


def _centre_on_the_medoid(points, products):
    """:func:`centred_gram` with ``products(centred)`` (the Gram matrix or the
    row squares, and the row squares) in place of the Gram matrix."""
    points = np.asarray(points, dtype=np.float64)
    origin = points[_robust_origin(points)]
    with np.errstate(over="ignore", invalid="ignore"):
        centred = points - origin
        product, squares = products(centred)
    top, middle = float(np.max(squares)), float(_median(squares))
    # Squares within 2^+-600 (no product overflows, none that counts is lost
    # below the smallest double) and none 2^700 times the typical one (no
    # point is far): scaling by 2^-exponent would multiply every result by
    # an exact power of two and the callers would divide it out.
    if 2.0**-600 <= middle and top <= min(2.0**600, 2.0**700 * middle):
        return origin, centred, product, 0
    # max |centred| a row, without an array of magnitudes (NaN where one is).
    largest_each = np.maximum(centred.max(axis=1), -centred.min(axis=1))
    typical = float(_median(largest_each))
    if typical == 0:
        return origin, centred, None, 0
    limit = typical * 2.0**400
    far = ~(largest_each <= limit)
    if far.any():
        centred[far] = _bring_in(centred[far], limit)
        largest_each = np.minimum(largest_each, limit)
    exponent = math.frexp(float(np.max(largest_each)))[1]
    times_power_of_two(centred, -exponent, out=centred)
    return origin, centred, products(centred)[0], exponent


def gram_about_the_medoid(centred):
    """For when :func:`centred_gram` finds at least half the points at the
    medoid (``gram`` None) and the others' distances are still wanted:
    ``(scaled, gram, exponent)``, ``centred`` times ``2**-exponent`` so that
    its largest entry is below 1 (no square overflows, as a Byzantine
    ``1e300`` would) and its Gram matrix."""
    largest = _largest_magnitude(centred)
    exponent = int(np.frexp(largest)[1]) if 0 < largest < np.inf else 0
    scaled = times_power_of_two(centred, -exponent)
    with np.errstate(over="ignore", invalid="ignore"):
        return scaled, scaled @ scaled.T, exponent


def geometric_median(points, *, nu=1e-6, max_iter=1000, tol=1e-6):
    """The point minimizing ``sum_i ||z - x_i||``, by smoothed Weiszfeld.

    Weiszfeld's step takes ``z`` to ``sum_i a_i x_i / sum_i a_i`` with
    ``a_i = 1 / max(nu * s, ||z - x_i||)``, where ``s`` is the median distance
    of the points from their medoid (when it is 0, at least half the points
    are the medoid, which is then returned): the smoothing and the tolerance are
    relative to the honest points' spread, so that the result scales with the
    points (gradients shrink a million-fold during a fit). Each iteration
    goes the multiple of that step (1, 1.5, 2, 3 or 4.5) with the smallest sum
    of distances: Weiszfeld's own where it converges fast (in high
    dimension), longer where it crawls (Ostresh's over-relaxation, and
    beyond). The iterations start at the medoid and run in the
    ``n``-dimensional space of weights on the points, from their Gram
    matrix: one ``O(n^2 d)`` product, then ``O(n^2)`` an iteration. They
    stop when an iteration moves ``z`` by at most ``tol * s``, or after
    ``max_iter``.

    Two cases are settled without iterating. If the medoid satisfies the
    subgradient condition (the unit vectors towards the other points sum to
    at most the number of copies of it sent), it is the geometric median and
    is returned exactly: near such a point Weiszfeld's iterations only
    crawl. A point more than ``2^400`` times the typical distance from the
    medoid is brought in along its ray to that distance: it pulls by its
    direction only, so the median barely moves, and no square overflows
    whatever magnitudes are sent (a Byzantine ``1e300``).

    Parameters
    ----------
    points : ndarray of shape (n_points, n_features)
    nu : float, default=1e-6
        Smoothing, relative to the spread ``s``: distances below ``nu * s``
        count as ``nu * s``.
    max_iter : int, default=1000
        Iterations at most; where the median is not one of the points they
        usually stop after 5 to 20 by ``tol``.
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
    origin, centred, gram, exponent = centred_gram(points)
    if gram is None:
        # At least half the points are the medoid: it is a geometric median
        # (their unit ball of subgradients holds the others' pull).
        return origin.copy()
    squared = np.maximum(gram.diagonal(), 0)
    scale = float(np.sqrt(_median(squared)))
    if scale == 0:
        return origin.copy()
    # Where the median is a point sent several times (or the pull of the others
    # is weak), Weiszfeld's iterations crawl towards it; the subgradient
    # condition tells at once. Only the medoid can be such a point.
    distances = _distances(gram)
    medoid = int(np.argmin(distances.sum(axis=1)))
    # Copies of the medoid: among the points the Gram matrix puts at it (its
    # rounding is far below the bound), those equal to it.
    near = np.flatnonzero(
        distances[medoid] <= 1e-4 * (np.sqrt(squared[medoid]) + scale)
    )
    duplicates = int(np.count_nonzero(np.all(centred[near] == centred[medoid], axis=1)))
    if _is_median(gram, distances, medoid, duplicates):
        return origin + times_power_of_two(centred[medoid], exponent)
    weights = _weiszfeld_weights(gram, squared, scale, nu, max_iter, tol)
    return origin + times_power_of_two(weights @ centred, exponent)


def _weiszfeld_weights(gram, squared, scale, nu, max_iter, tol):
    """The weights ``w`` of :func:`geometric_median`'s smoothed Weiszfeld
    iterations with a line search, ``z = origin + w @ centred``, run on the
    Gram matrix of the centred points (``squared`` its diagonal, ``scale``
    the spread)."""
    # Never zero: a spread of 1e-160 squares to below float64's smallest.
    floor_squared = max((nu * scale) ** 2, np.finfo(np.float64).tiny)
    enough = (tol * scale) ** 2
    # z = origin + weights @ centred. From the medoid itself the smoothed
    # weights barely move (its own weight is 1 / floor): start one clipped
    # step away, every point within the spread weighing alike.
    weights = 1.0 / np.maximum(np.sqrt(squared), scale)
    weights /= weights.sum()
    # Few points, so NumPy's per-call overhead is the cost: one product by G
    # an iteration. Along z + t (T(z) - z), T Weiszfeld's map, the squared
    # distances |x_i - z|^2 are quadratics in t, current_i - 2 t b_i + t^2 c
    # with b = G step - w G step and c = step G step: every multiple is
    # tried at once, and the one taken gives the next squared distances.
    image = gram @ weights
    current = squared - 2 * image + weights @ image
    twice, squares = 2 * _STEP_MULTIPLES[:, None], _STEP_MULTIPLES[:, None] ** 2
    for _ in range(max_iter):
        inverse = 1.0 / np.sqrt(np.maximum(current, floor_squared))
        step = inverse / inverse.sum() - weights
        step_image = gram @ step
        curvature = step @ step_image
        tried = current - twice * (step_image - weights @ step_image) + squares * curvature
        best = int(np.argmin(np.sqrt(np.maximum(tried, 0)).sum(axis=1)))
        t = _STEP_MULTIPLES[best]
        weights = weights + t * step
        current = tried[best]
        if t * t * curvature <= enough:
            break
    return weights


def _bring_in(rows, limit):
    """``rows`` scaled along their direction to a largest entry within a
    factor 2 of ``limit`` (an infinite entry counts as float64's largest)."""
    top = np.finfo(np.float64).max
    rows = np.nan_to_num(rows, nan=0.0, posinf=top, neginf=-top)
    exponents = np.frexp(np.max(np.abs(rows), axis=1, keepdims=True))[1]
    return np.ldexp(rows, -exponents) * limit


def rough_median(points):
    """One clipped step from the medoid towards the geometric median:
    ``origin + sum_i a_i (x_i - origin) / sum_i a_i`` with ``a_i = 1 /
    max(||x_i - origin||, s)``, ``s`` the median distance from the medoid.
    Each point pulls by at most ``s``: a robust centre for the price of one
    Gram matrix (the start of :func:`geometric_median`'s iterations)."""
    origin, centred, squares, exponent = centred_squares(points)
    if squares is None:
        return origin.copy()
    norms = np.sqrt(np.maximum(squares, 0))
    weights = 1.0 / np.maximum(norms, max(float(_median(norms)), np.finfo(float).tiny))
    weights /= weights.sum()
    return origin + times_power_of_two(weights @ centred, exponent)


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
    max_iter : int, default=1000
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

    def __init__(self, nu=1e-6, max_iter=1000, tol=1e-6):
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
