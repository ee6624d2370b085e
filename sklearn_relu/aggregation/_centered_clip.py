"""Centered clipping (Karimireddy, He, Jaggi, "Learning from history for
Byzantine robust optimization", ICML 2021)."""

import numbers

import numpy as np

from ._base import RobustAggregator
from ._geometric_median import (
    _median,
    centred_gram,
    centred_squares,
    gram_about_the_medoid,
    times_power_of_two,
)

__all__ = ["CenteredClip"]


class CenteredClip(RobustAggregator):
    """Clipped averaging about a centre.

    Starting from the medoid ``v`` of the vectors, each of ``n_iter``
    iterations moves it to
    ``v + 1/n sum_i (x_i - v) min(1, tau / ||x_i - v||)``: a vector farther
    than ``tau`` from the centre pulls with strength ``tau`` only, so ``f``
    Byzantine vectors move an iteration by at most ``f tau / n``. The paper
    iterates once (its default) from the previous step's aggregate with a
    radius set from the honest vectors' variance; here the rule is stateless,
    starts from the medoid (an honest vector's neighbourhood whenever fewer
    than half are Byzantine) and takes ``tau`` as half the median distance
    of the other vectors from it (unless given), below the honest spread, so
    that it shrinks with the gradients and a far vector's pull stays a
    fraction of it. Fewer than half the workers may be Byzantine
    (breakdown point 1/2); the paper's guarantee needs a smaller share.

    The distances come from one Gram matrix of the vectors centred on the
    medoid and the iterations run on weights over the vectors, so that an
    iteration costs ``O(n^2)``, not a pass over the ``n x d`` vectors; one
    iteration (the default) needs only the distances from the medoid, the
    centred vectors' norms.

    Parameters
    ----------
    tau : float or None, default=None
        The clipping radius; ``None`` is half the median distance of the
        other vectors from the medoid.
    n_iter : int, default=1
        Clipping iterations (the paper's default, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import CenteredClip
    >>> from sklearn_relu.compression import SignSGD
    >>> vectors = [np.array([v]) for v in (1.0, 2.0, 3.0, 4.0, 1e6)]
    >>> CenteredClip().aggregate(vectors, SignSGD())
    array([3.])
    """

    def __init__(self, tau=None, n_iter=1):
        if tau is not None and not (isinstance(tau, numbers.Real) and tau > 0):
            raise ValueError(f"tau must be a positive float or None, got {tau!r}")
        if not isinstance(n_iter, numbers.Integral) or isinstance(n_iter, bool) \
                or n_iter < 1:
            raise ValueError(f"n_iter must be an integer >= 1, got {n_iter!r}")
        self.tau, self.n_iter = tau, n_iter

    def _parameters(self):
        return {"tau": self.tau, "n_iter": self.n_iter}

    def center(self, points):
        # One iteration needs only the distances from the medoid.
        iterates = self.n_iter > 1
        origin, centred, product, exponent = (
            centred_gram if iterates else centred_squares
        )(points)
        n_points = points.shape[0]
        if product is None:
            # More than half the points are the medoid: nothing to clip towards.
            if self.tau is None:
                return origin.copy()
            centred, product, exponent = gram_about_the_medoid(centred)
            iterates = True
        gram = product if iterates else None
        squared = np.maximum(product.diagonal() if iterates else product, 0)
        distances = np.sqrt(squared)
        if self.tau is None:
            # The medoid's own distance (0) left out.
            tau = 0.5 * float(_median(np.sort(distances)[1:]))
        else:
            tau = float(np.ldexp(self.tau, -exponent))
        if not tau > 0:
            return origin.copy()
        # v = origin + weights @ centred; ||x_i - v||^2 = G_ii - 2 (G w)_i + w G w.
        weights = np.zeros(n_points)
        for iteration in range(self.n_iter):
            if iteration > 0:
                image = gram @ weights
                distances = np.sqrt(np.maximum(squared - 2 * image + weights @ image, 0))
            keep = np.minimum(1.0, tau / np.maximum(distances, tau)) / n_points
            # (x_i - v) = centred_i - weights @ centred: the keep-weighted sum.
            weights = weights * (1.0 - keep.sum()) + keep
        return origin + times_power_of_two(weights @ centred, exponent)
