"""The coordinate-wise trimmed mean (Yin et al., ICML 2018)."""

import numbers

import numpy as np

from ._base import AssumesByzantine, RobustAggregator

__all__ = ["TrimmedMean"]


class TrimmedMean(AssumesByzantine, RobustAggregator):
    """The mean of each coordinate after dropping its ``n_trimmed`` largest
    and ``n_trimmed`` smallest values.

    It withstands ``f <= n_trimmed`` Byzantine workers (each coordinate then
    stays between the smallest and the largest honest value), and needs
    ``2 n_trimmed < n``; breakdown point ``n_trimmed / n``, below 1/2.

    Parameters
    ----------
    n_trimmed : int or None, default=None
        Values dropped at each end of every coordinate. ``None`` drops the
        fit's ``n_byzantine`` (``ReLURegressor(n_byzantine=f)``: any ``f <
        n / 2``); outside a fit, a quarter, ``n // 4`` (the interquartile
        mean). At ``(n - 1) // 2`` it is the coordinate-wise median.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import TrimmedMean
    >>> from sklearn_relu.compression import SignSGD
    >>> vectors = [np.array([v]) for v in (1.0, 2.0, 3.0, 4.0, -500.0)]
    >>> TrimmedMean(n_trimmed=1).aggregate(vectors, SignSGD())
    array([2.])
    """

    breakdown_point = "n_trimmed / n (default: the fit's n_byzantine, below 1/2)"

    def __init__(self, n_trimmed=None):
        if n_trimmed is not None and (
            not isinstance(n_trimmed, numbers.Integral) or isinstance(n_trimmed, bool)
            or n_trimmed < 0
        ):
            raise ValueError(f"n_trimmed must be an integer >= 0 or None, got {n_trimmed!r}")
        self.n_trimmed = n_trimmed

    def _parameters(self):
        return {"n_trimmed": self.n_trimmed}

    def _trimmed(self, n_points, dropped=0):
        trimmed = self._byzantine_count(self.n_trimmed, (n_points + dropped) // 4)
        # Statistics left out for not being finite came from Byzantine workers.
        trimmed = max(trimmed - dropped, 0)
        if 2 * trimmed >= n_points:
            raise ValueError(
                f"TrimmedMean(n_trimmed={trimmed}) needs more than {2 * trimmed} "
                f"workers, got {n_points}"
            )
        return trimmed

    def max_byzantine(self, n_workers):
        if self.n_trimmed is None:
            return (n_workers - 1) // 2
        return self._trimmed(n_workers)

    def _mean_of_middle(self, points, trimmed):
        n_points = points.shape[0]
        ordered = np.sort(points, axis=0)
        return ordered[trimmed : n_points - trimmed].mean(axis=0)

    def center(self, points):
        return self._mean_of_middle(points, self._trimmed(points.shape[0]))

    def center_of_statistics(self, points, dropped):
        return self._mean_of_middle(points, self._trimmed(points.shape[0], dropped))
