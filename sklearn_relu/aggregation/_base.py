"""The aggregator interface, and the two families behind it.

A :class:`SumAggregator` depends on the workers' messages only through their
sum, which a backend may compute while the messages are compressed (an
allreduce). A :class:`RobustAggregator` needs every message: it takes a robust
centre of the workers' vectors, so that a minority of Byzantine workers cannot
move the step arbitrarily (see :doc:`/robust`).
"""

import warnings
from abc import ABC, abstractmethod

import numpy as np

from .._registry import ParameterIdentity

__all__ = ["Aggregator", "RobustAggregator", "SumAggregator"]


class Aggregator(ParameterIdentity, ABC):
    """Combines the workers' decoded vectors (in worker order) into the step
    direction, and the workers' exact statistics (the start's, the losses)
    into one.

    Every rule is deterministic: given the same vectors in the same order, it
    returns the same bits on every backend and every MPI rank.
    """

    #: Whether the direction is a sign (``+1`` or ``-1`` a coordinate), so that
    #: a master can send it back as one bit a coordinate.
    returns_signs = False
    #: Whether the direction depends on the messages only through their sum
    #: (:meth:`SumAggregator.from_sum`): only then may a backend sum the
    #: messages while compressed (MPI's allreduce, IntSGD).
    summable = False
    #: Whether the rule has a defence against Byzantine workers: False for
    #: the mean (a single one moves it arbitrarily), which sums the workers'
    #: statistics and lets a fit run under attack with a warning. What logic
    #: reads, rather than :attr:`breakdown_point`.
    robust = False
    #: The largest share of Byzantine workers the rule withstands, in words
    #: (for error messages and the documentation only).
    breakdown_point = "0"

    @abstractmethod
    def aggregate(self, vectors, compressor):
        """The direction from the workers' decoded vectors, in worker order."""

    def combine_statistics(self, statistics):
        """The total of the workers' exact statistics (one 1-D array each, in
        worker order): their sum, added in worker order."""
        total = np.array(statistics[0], copy=True)
        for statistic in statistics[1:]:
            total += statistic
        return total

    def max_byzantine(self, n_workers):
        """The most Byzantine workers among ``n_workers`` a fit with the rule
        accepts: those it withstands, for a :attr:`robust` rule."""
        return 0

    def withstands(self, n_byzantine, n_workers):
        """Whether ``n_byzantine`` Byzantine workers among ``n_workers``
        cannot move the direction arbitrarily: none, or no more than a
        :attr:`robust` rule's :meth:`max_byzantine`.

        Examples
        --------
        >>> from sklearn_relu.aggregation import GeometricMedian, Mean
        >>> Mean().withstands(0, 10), Mean().withstands(1, 10)
        (True, False)
        >>> GeometricMedian().withstands(4, 10), GeometricMedian().withstands(5, 10)
        (True, False)
        """
        if n_byzantine == 0:
            return True
        return self.robust and n_byzantine <= self.max_byzantine(n_workers)

    def check_byzantine(self, n_byzantine, n_workers):
        """Raise a ``ValueError`` if ``n_byzantine`` of ``n_workers`` workers is
        at or beyond the rule's breakdown point; warn if the rule is not
        :attr:`robust` and some are Byzantine (running the mean under attack
        is how one sees what an attack does)."""
        if n_byzantine >= n_workers:
            raise ValueError(
                f"n_byzantine={n_byzantine} must be below n_workers={n_workers}: "
                "at least one worker must be honest"
            )
        tolerated = self.max_byzantine(n_workers)
        if n_byzantine > tolerated:
            raise ValueError(
                f"aggregation={self!r} withstands at most {tolerated} Byzantine "
                f"worker(s) of {n_workers} (breakdown point {self.breakdown_point}); "
                f"n_byzantine={n_byzantine} is at or beyond it"
            )
        if not self.robust and n_byzantine > 0:
            warnings.warn(
                f"aggregation={self!r} has breakdown point 0: a single "
                f"Byzantine worker can move it arbitrarily, and n_byzantine="
                f"{n_byzantine}. Use a robust rule such as 'geometric_median'.",
                UserWarning,
            )

    def reset(self):
        """Forget the state of earlier steps (a new run starts)."""

    def get_state(self):
        """What the aggregator keeps from step to step (a 1-D float64 array), or
        None when it keeps nothing. A checkpoint saves it and a resumed fit
        hands it to :meth:`set_state`."""
        return None

    def set_state(self, state):
        """Continue from ``state``, which :meth:`get_state` returned."""

    def variance_factor(self, n_values):
        """What a rule with memory delays of each step, relative to the step's
        squared norm: ``learning_rate="auto"`` plans for it as for a
        compressor's error feedback (0 for a rule without memory)."""
        return 0.0

    def sign_units(self, compressor):
        """Whether the direction is a unit per coordinate (the sign schedule's
        business) rather than a gradient."""
        return self.returns_signs or compressor.sign_units


class SumAggregator(Aggregator):
    """A function of the workers' sum: :meth:`aggregate` adds the vectors in
    worker order and hands the sum to :meth:`from_sum`."""

    summable = True

    def aggregate(self, vectors, compressor):
        total = vectors[0].copy()
        for vector in vectors[1:]:
            total += vector
        return self.from_sum(total, len(vectors), compressor)

    @abstractmethod
    def from_sum(self, total, n_workers, compressor):
        """The direction from the sum of ``n_workers`` decoded vectors."""


class RobustAggregator(Aggregator):
    """A robust centre of the workers' vectors, scaled as their mean would be.

    Subclasses implement :meth:`center` on a 2-D float64 array, one row a
    worker. For gradients (each worker's message is its share of the batch
    gradient) the direction is ``n_workers`` times the centre, as the mean's
    is the sum; for signs it is the centre itself
    (:meth:`~sklearn_relu.compression.Compressor.mean_of_sum`). The workers'
    exact statistics are combined the same way: ``n_workers`` times their
    centre, so that a Byzantine worker cannot steer the start either.
    """

    robust = True
    breakdown_point = "1/2"

    @abstractmethod
    def center(self, points):
        """The robust centre of ``points``, an ``(n, d)`` float64 array."""

    def aggregate(self, vectors, compressor):
        points = np.array(vectors, dtype=np.float64)
        n_workers = points.shape[0]
        direction = compressor.mean_of_sum(n_workers * self.center(points), n_workers)
        return direction.astype(vectors[0].dtype, copy=False)

    def combine_statistics(self, statistics):
        points = np.array(statistics, dtype=np.float64)
        n_workers = points.shape[0]
        # Honest statistics are finite: a row that is not comes from a worker
        # that lies (a huge lie overflows a float32 statistic to inf), and
        # would make the centre NaN. The centre is taken without it.
        finite = np.all(np.isfinite(points), axis=1)
        dropped = n_workers - int(np.count_nonzero(finite))
        if 0 < dropped < n_workers:
            points = points[finite]
        # In the statistics' type (float32 for some), as MPI's reduce returns it.
        return (n_workers * self.center_of_statistics(points, dropped)).astype(
            np.asarray(statistics[0]).dtype, copy=False
        )

    def center_of_statistics(self, points, dropped):
        """The centre of the workers' statistics, ``dropped`` of them (not
        finite, so Byzantine) left out: :meth:`center` by default."""
        return self.center(points)

    def remember_byzantine(self, n_byzantine):
        """Take the fit's ``n_byzantine`` as the number of Byzantine workers
        the rule assumes (rules that need it: Krum, the trimmed mean, NNM)."""

    def check_byzantine(self, n_byzantine, n_workers):
        super().check_byzantine(n_byzantine, n_workers)
        self.remember_byzantine(n_byzantine)

    def max_byzantine(self, n_workers):
        # Fewer than half.
        return (n_workers - 1) // 2


class AssumesByzantine:
    """For a rule that needs the number ``f`` of Byzantine workers (Krum, the
    trimmed mean, NNM): its own parameter when given, else the fit's
    ``n_byzantine`` (which :meth:`remember_byzantine` keeps), else a default
    from the number of points. Listed before the rule's base class."""

    _fit_byzantine = None

    def remember_byzantine(self, n_byzantine):
        self._fit_byzantine = n_byzantine

    def _byzantine_count(self, given, default):
        if given is not None:
            return given
        if self._fit_byzantine is not None:
            return self._fit_byzantine
        return default
