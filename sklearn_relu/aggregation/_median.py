"""The coordinate-wise median (Yin et al., "Byzantine-robust distributed
learning: towards optimal statistical rates", ICML 2018)."""

import numpy as np

from ._base import RobustAggregator

__all__ = ["CoordinateMedian"]


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
        return np.median(points, axis=0)
