"""Centered clipping (Karimireddy, He, Jaggi, "Learning from history for
Byzantine robust optimization", ICML 2021)."""

import numbers

import numpy as np

from ._base import RobustAggregator

__all__ = ["CenteredClip"]


class CenteredClip(RobustAggregator):
    """Iterated clipped averaging about a centre.

    Starting from the coordinate-wise median ``v``, each of ``n_iter``
    iterations moves it to
    ``v + 1/n sum_i (x_i - v) min(1, tau / ||x_i - v||)``: a vector farther
    than ``tau`` from the centre pulls with strength ``tau`` only. The paper
    centres on the previous step's aggregate with a fixed ``tau``; here the
    rule is stateless and ``tau`` is the median distance of the vectors from
    the centre (unless given), so that it shrinks with the gradients. Fewer
    than half the workers may be Byzantine (breakdown point 1/2); the
    paper's guarantee needs a smaller share.

    Parameters
    ----------
    tau : float or None, default=None
        The clipping radius; ``None`` is the median distance from the centre,
        recomputed at each iteration.
    n_iter : int, default=3
        Clipping iterations.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import CenteredClip
    >>> from sklearn_relu.compression import SignSGD
    >>> vectors = [np.array([v]) for v in (1.0, 2.0, 3.0, 4.0, 1e6)]
    >>> CenteredClip().aggregate(vectors, SignSGD())
    array([3.])
    """

    def __init__(self, tau=None, n_iter=3):
        if tau is not None and not (isinstance(tau, numbers.Real) and tau > 0):
            raise ValueError(f"tau must be a positive float or None, got {tau!r}")
        if not isinstance(n_iter, numbers.Integral) or isinstance(n_iter, bool) \
                or n_iter < 1:
            raise ValueError(f"n_iter must be an integer >= 1, got {n_iter!r}")
        self.tau, self.n_iter = tau, n_iter

    def _parameters(self):
        return {"tau": self.tau, "n_iter": self.n_iter}

    def center(self, points):
        center = np.median(points, axis=0)
        for _ in range(self.n_iter):
            offsets = points - center
            distances = np.sqrt(np.einsum("ij,ij->i", offsets, offsets))
            tau = np.median(distances) if self.tau is None else self.tau
            if tau == 0:
                break
            keep = np.minimum(1.0, tau / np.maximum(distances, tau))
            center = center + keep @ offsets / points.shape[0]
        return center
