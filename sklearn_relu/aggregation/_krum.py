"""Krum and multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine
learning with adversaries: Byzantine tolerant gradient descent", NeurIPS 2017)."""

import numbers

import numpy as np

from ._base import AssumesByzantine, RobustAggregator
from ._geometric_median import centred_gram, gram_about_the_medoid

__all__ = ["Krum", "MultiKrum", "krum_scores"]


def scaled_squared_distances(points):
    """The ``(n, n)`` squared Euclidean distances between the rows of
    ``points`` times one power of two, from one Gram matrix of the rows
    centred on their medoid (:func:`._geometric_median.centred_gram`): exact
    to rounding relative to the spread, no overflow or underflow whatever
    the magnitudes (a row beyond ``2^400`` times the spread counts as that
    far), and in the order of the true distances."""
    _, centred, gram, _ = centred_gram(points)
    if gram is None:
        _, gram, _ = gram_about_the_medoid(centred)
    squared = gram.diagonal()
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * gram, 0)
    np.fill_diagonal(distances, 0.0)
    return distances


def krum_scores(points, n_byzantine):
    """Each point's sum of squared distances to its ``n - n_byzantine - 2``
    nearest other points (the original paper's count), times a power of two
    (:func:`scaled_squared_distances`)."""
    distances = scaled_squared_distances(points)
    np.fill_diagonal(distances, np.inf)
    neighbours = points.shape[0] - n_byzantine - 2
    return np.sort(distances, axis=1)[:, :neighbours].sum(axis=1)


def _check_count(name, value):
    if value is not None and (
        not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0
    ):
        raise ValueError(f"{name} must be an integer >= 0 or None, got {value!r}")


class Krum(AssumesByzantine, RobustAggregator):
    """The worker's vector closest to its ``n - f - 2`` nearest neighbours.

    Each vector scores the sum of squared distances to its ``n - f - 2``
    nearest others; the lowest score wins (the first in worker order on a
    tie). It needs ``n >= 2 f + 3``: breakdown point ``(n - 2) / (2 n)``.
    Krum returns one worker's vector, so its direction is as noisy as a
    single worker's gradient. The distances come from one Gram matrix of the
    vectors centred on their medoid (BLAS), not from a loop over pairs.

    Parameters
    ----------
    n_byzantine : int or None, default=None
        The ``f`` the rule assumes. ``None`` takes the fit's ``n_byzantine``
        (``ReLURegressor(n_byzantine=f)``); outside a fit, the most the
        number of workers allows, ``(n - 3) // 2``.

    See Also
    --------
    MultiKrum : the average of the best-scored vectors.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import Krum
    >>> from sklearn_relu.compression import SignSGD
    >>> vectors = [np.array([v, 0.0]) for v in (1.0, 1.2, 0.9, 1.1, 50.0)]
    >>> Krum(n_byzantine=1).aggregate(vectors, SignSGD())
    array([1.1, 0. ])
    """

    breakdown_point = "(n - 2) / (2 n)"

    def __init__(self, n_byzantine=None):
        _check_count("n_byzantine", n_byzantine)
        self.n_byzantine = n_byzantine

    def _parameters(self):
        return {"n_byzantine": self.n_byzantine}

    def _assumed(self, n_points, dropped=0):
        assumed = self._byzantine_count(
            self.n_byzantine, max((n_points + dropped - 3) // 2, 0)
        )
        # Statistics left out for not being finite came from Byzantine workers.
        assumed = max(assumed - dropped, 0)
        if n_points < 2 * assumed + 3:
            raise ValueError(
                f"{type(self).__name__} with {assumed} Byzantine worker(s) needs at "
                f"least {2 * assumed + 3} workers, got {n_points}"
            )
        return assumed

    def max_byzantine(self, n_workers):
        if self.n_byzantine is not None:
            return self._assumed(n_workers)
        return max((n_workers - 3) // 2, 0)

    def _select(self, points, assumed):
        return points[int(np.argmin(krum_scores(points, assumed)))].copy()

    def center(self, points):
        return self._select(points, self._assumed(points.shape[0]))

    def center_of_statistics(self, points, dropped):
        return self._select(points, self._assumed(points.shape[0], dropped))


class MultiKrum(Krum):
    """The average of the ``m`` vectors of best Krum score.

    Scores as :class:`Krum` (the sum of squared distances to the ``n - f -
    2`` nearest others); the ``m`` lowest are averaged (the first in worker
    order among equal scores). ``m = 1`` is Krum; ``m = n - f`` (the default)
    keeps as many vectors as there are honest workers.

    Parameters
    ----------
    n_byzantine : int or None, default=None
        As :class:`Krum`'s.
    m : int or None, default=None
        Vectors averaged; ``None`` is ``n - f``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import MultiKrum
    >>> from sklearn_relu.compression import SignSGD
    >>> vectors = [np.array([v, 0.0]) for v in (1.0, 1.2, 0.9, 1.1, 50.0)]
    >>> MultiKrum(n_byzantine=1).aggregate(vectors, SignSGD())
    array([1.05, 0.  ])
    """

    def __init__(self, n_byzantine=None, m=None):
        super().__init__(n_byzantine)
        _check_count("m", m)
        if m == 0:
            raise ValueError("m must be an integer >= 1 or None, got 0")
        self.m = m

    def _parameters(self):
        return {"n_byzantine": self.n_byzantine, "m": self.m}

    def _select(self, points, assumed):
        n_points = points.shape[0]
        m = n_points - assumed if self.m is None else min(self.m, n_points)
        order = np.argsort(krum_scores(points, assumed), kind="stable")
        return points[np.sort(order[:m])].mean(axis=0)
