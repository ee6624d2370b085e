"""The coordinate-wise median (Yin et al., "Byzantine-robust distributed
learning: towards optimal statistical rates", ICML 2018)."""

import numpy as np

from ._base import RobustAggregator

__all__ = ["CoordinateMedian", "coordinate_median"]


def coordinate_median(points):
    """``np.median(points, axis=0)``, bit for bit, from one sort of the
    columns: NumPy's partition along the short axis of an ``(n, d)`` array is
    several times slower than a sort of it (see the aggregation timings in
    :doc:`/benchmarks`). A column with a NaN has median NaN, as NumPy's."""
    ordered = np.sort(points, axis=0)
    n_points = ordered.shape[0]
    if n_points % 2:
        median = ordered[n_points // 2].copy()
    else:
        # np.median's mean of the middle two: their sum over 2.
        median = ordered[n_points // 2 - 1] + ordered[n_points // 2]
        median /= 2
    median[np.isnan(ordered[-1])] = np.nan
    return median


class CoordinateMedian(RobustAggregator):
    """The median of the workers' vectors, coordinate by coordinate.

    Breakdown point 1/2: with ``f < n/2`` Byzantine vectors each coordinate
    stays between the smallest and the largest honest value. It ignores how
    coordinates vary together, so its error grows with the dimension faster
    than the geometric median's.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import CoordinateMedian
    >>> from sklearn_relu.compression import SignSGD
    >>> vectors = [np.array([1.0, 5.0]), np.array([2.0, -1.0]), np.array([900.0, 0.0])]
    >>> CoordinateMedian().aggregate(vectors, SignSGD())   # signs: the centre itself
    array([2., 0.])
    """

    def center(self, points):
        return coordinate_median(points)
