"""Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine learning with
adversaries: Byzantine tolerant gradient descent", NeurIPS 2017)."""

import numbers

import numpy as np

from ._base import RobustAggregator

__all__ = ["Krum", "krum_scores"]


def krum_scores(points, n_byzantine):
    """Each point's sum of squared distances to its ``n - n_byzantine - 2``
    nearest other points."""
    n_points = points.shape[0]
    # Centred on the coordinate-wise median, the Gram matrix's cancellation
    # error is relative to the honest points' spread, not to their norms.
    centred = points - np.median(points, axis=0)
    gram = centred @ centred.T
    squared = np.diag(gram)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * gram, 0)
    np.fill_diagonal(distances, np.inf)
    neighbours = n_points - n_byzantine - 2
    return np.sort(distances, axis=1)[:, :neighbours].sum(axis=1)


class Krum(RobustAggregator):
    """The worker's vector closest to its ``n - f - 2`` nearest neighbours.

    Each vector scores the sum of squared distances to its ``n - f - 2``
    nearest others; the lowest score wins (the first in worker order on a
    tie). It needs ``n >= 2 f + 3``: breakdown point ``(n - 2) / (2 n)``.
    Krum returns one worker's vector, so its direction is as noisy as a
    single worker's gradient.

    Parameters
    ----------
    n_byzantine : int or None, default=None
        The ``f`` the rule assumes. ``None`` assumes the most the number of
        workers allows, ``(n - 3) // 2``.

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
        if n_byzantine is not None and (
            not isinstance(n_byzantine, numbers.Integral) or isinstance(n_byzantine, bool)
            or n_byzantine < 0
        ):
            raise ValueError(
                f"n_byzantine must be an integer >= 0 or None, got {n_byzantine!r}"
            )
        self.n_byzantine = n_byzantine

    def _parameters(self):
        return {"n_byzantine": self.n_byzantine}

    def _assumed(self, n_points):
        if self.n_byzantine is None:
            assumed = max((n_points - 3) // 2, 0)
        else:
            assumed = self.n_byzantine
        if n_points < 2 * assumed + 3:
            raise ValueError(
                f"Krum with {assumed} Byzantine worker(s) needs at least "
                f"{2 * assumed + 3} workers, got {n_points}"
            )
        return assumed

    def max_byzantine(self, n_workers):
        return self._assumed(n_workers)

    def center(self, points):
        scores = krum_scores(points, self._assumed(points.shape[0]))
        return points[int(np.argmin(scores))].copy()
