"""Pre-aggregation: a transform of the workers' vectors before a robust rule.

Nearest-neighbour mixing (NNM; Allouah, Farhadkhani, Guerraoui, Gupta,
Pinot, Stephan, "Fixing by Mixing: A Recipe for Optimal Byzantine ML under
Heterogeneity", AISTATS 2023) and bucketing (Karimireddy, He, Jaggi,
"Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing", ICLR
2022) reduce the spread of the honest vectors the rule sees, which is what
heterogeneous shards make large. ``aggregation="nnm+geometric_median"``
(:func:`~sklearn_relu.aggregation.get_aggregator`) composes them with any
robust rule.
"""

import numbers
from abc import abstractmethod

import numpy as np

from .._registry import ParameterIdentity
from ._base import AssumesByzantine, RobustAggregator
from ._krum import _check_count, scaled_squared_distances

__all__ = ["NNM", "Bucketing", "PreAggregated", "PreAggregator"]


class PreAggregator(ParameterIdentity):
    """Maps the workers' vectors (an ``(n, d)`` float64 array, worker order)
    to the points a robust rule aggregates."""

    def remember_byzantine(self, n_byzantine):
        """Take the fit's ``n_byzantine`` (see
        :meth:`RobustAggregator.remember_byzantine`)."""

    def n_points(self, n_workers):
        """How many points :meth:`transform` makes of ``n_workers`` vectors."""
        return n_workers

    @abstractmethod
    def transform(self, points, step):
        """The points the rule aggregates at step ``step`` (counted from 0
        since the last reset)."""


class NNM(AssumesByzantine, PreAggregator):
    """Nearest-neighbour mixing: each vector becomes the mean of its ``n - f``
    nearest vectors, itself included.

    Distances are Euclidean (from one Gram matrix of the vectors centred on
    their medoid, so that no magnitude overflows); among equally distant
    vectors the first in worker order is taken. Deterministic: no random
    stream.

    Parameters
    ----------
    n_byzantine : int or None, default=None
        The ``f`` of ``n - f``. ``None`` takes the fit's ``n_byzantine``
        (``ReLURegressor(n_byzantine=f)``); outside a fit, ``(n - 1) // 2``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import NNM
    >>> points = np.array([[0.0], [1.0], [2.0], [9.0]])
    >>> NNM(n_byzantine=1).transform(points, step=0).ravel()
    array([1., 1., 1., 4.])
    """

    def __init__(self, n_byzantine=None):
        _check_count("n_byzantine", n_byzantine)
        self.n_byzantine = n_byzantine

    def _parameters(self):
        return {"n_byzantine": self.n_byzantine}

    def _assumed(self, n_points):
        return self._byzantine_count(self.n_byzantine, (n_points - 1) // 2)

    def transform(self, points, step):
        n_points = points.shape[0]
        kept = n_points - self._assumed(n_points)
        if kept < 1:
            raise ValueError(
                f"NNM with {self._assumed(n_points)} Byzantine worker(s) needs more "
                f"than that many workers, got {n_points}"
            )
        order = np.argsort(scaled_squared_distances(points), axis=1, kind="stable")
        # Each row's neighbours summed by one product with a 0/1 matrix (BLAS),
        # not n gathers of (n - f) x d values.
        chosen = np.zeros((n_points, n_points))
        np.put_along_axis(chosen, order[:, :kept], 1.0, axis=1)
        return chosen @ points / kept


class Bucketing(PreAggregator):
    """Bucketing: shuffle the vectors, average them in buckets of ``s``.

    ``ceil(n / s)`` buckets, the last one smaller when ``s`` does not divide
    ``n``. The shuffle of step ``t`` is drawn from a random stream of
    ``(random_state, t)`` of its own, so it is the same on every backend and
    every MPI rank, and a resumed fit continues it. Each Byzantine worker
    spoils at most one bucket, so the rule must withstand ``f`` of the
    ``ceil(n / s)`` bucket means.

    Parameters
    ----------
    s : int, default=2
        Vectors a bucket.
    random_state : int, default=0
        Seed of the shuffles.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import Bucketing
    >>> points = np.arange(5.0)[:, None]
    >>> means = Bucketing(s=2).transform(points, step=0)
    >>> means.shape, float(means.sum() * 2 - points.sum() - means[-1, 0])
    ((3, 1), 0.0)
    """

    def __init__(self, s=2, random_state=0):
        if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 1:
            raise ValueError(f"s must be an integer >= 1, got {s!r}")
        if (
            not isinstance(random_state, numbers.Integral)
            or isinstance(random_state, bool) or random_state < 0
        ):
            raise ValueError(
                f"random_state must be an integer >= 0, got {random_state!r}"
            )
        self.s, self.random_state = s, random_state

    def _parameters(self):
        return {"s": self.s, "random_state": self.random_state}

    def n_points(self, n_workers):
        return -(-n_workers // self.s)

    def permutation(self, n_workers, step):
        """The order of the vectors at step ``step``."""
        rng = np.random.default_rng([self.random_state, step])
        return rng.permutation(n_workers)

    def transform(self, points, step):
        n_points, n_values = points.shape
        shuffled = points[self.permutation(n_points, step)]
        # The full buckets as one (buckets, s, d) array: each bucket's rows
        # summed in order, as a mean of each alone would.
        full = n_points - n_points % self.s
        means = shuffled[:full].reshape(-1, self.s, n_values).mean(axis=1)
        if full < n_points:
            means = np.concatenate([means, shuffled[full:].mean(axis=0)[None]])
        return means


class PreAggregated(RobustAggregator):
    """A robust rule applied to pre-aggregated vectors.

    The step's vectors go through ``pre`` (:class:`NNM`, :class:`Bucketing`)
    and then the rule; the workers' exact statistics (the start's, the
    losses) are combined by the rule alone, since pre-aggregation answers the
    noise of stochastic gradients, which exact statistics do not have.
    ``get_aggregator("nnm+krum")`` builds one.

    Parameters
    ----------
    pre : PreAggregator
    rule : RobustAggregator

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import get_aggregator
    >>> from sklearn_relu.compression import SignSGD
    >>> rule = get_aggregator("nnm+median")
    >>> rule
    PreAggregated(pre=NNM(n_byzantine=None), rule=CoordinateMedian())
    >>> vectors = [np.array([v]) for v in (0.0, 1.0, 2.0, 10.0)]
    >>> rule.remember_byzantine(1)
    >>> rule.aggregate(vectors, SignSGD())
    array([1.])
    """

    def __init__(self, pre, rule):
        if not isinstance(pre, PreAggregator):
            raise ValueError(f"pre must be a PreAggregator, got {pre!r}")
        if not isinstance(rule, RobustAggregator):
            raise ValueError(
                f"a pre-aggregator goes before a robust rule (one that needs every "
                f"vector), not {rule!r}"
            )
        self.pre, self.rule = pre, rule
        self._step = 0

    def _parameters(self):
        return {"pre": self.pre, "rule": self.rule}

    @property
    def breakdown_point(self):
        return f"that of {self.rule!r} over the pre-aggregated points"

    def remember_byzantine(self, n_byzantine):
        self.pre.remember_byzantine(n_byzantine)
        self.rule.remember_byzantine(n_byzantine)

    def max_byzantine(self, n_workers):
        return min(self.rule.max_byzantine(self.pre.n_points(n_workers)), n_workers - 1)

    def center(self, points):
        mixed = self.pre.transform(points, self._step)
        self._step += 1
        return self.rule.center(mixed)

    def combine_statistics(self, statistics):
        return self.rule.combine_statistics(statistics)

    def reset(self):
        self._step = 0
        self.rule.reset()

    def get_state(self):
        inner = self.rule.get_state()
        inner = np.zeros(0) if inner is None else np.asarray(inner, dtype=np.float64)
        return np.concatenate([[float(self._step)], inner])

    def set_state(self, state):
        state = np.asarray(state, dtype=np.float64)
        self._step = int(state[0])
        self.rule.set_state(state[1:] if state.shape[0] > 1 else None)

    def variance_factor(self, n_values):
        return self.rule.variance_factor(n_values)
