"""Block-coordinate geometric median descent with memory (Acharya, Hashemi,
Jain, Sanghavi, Dhillon, Topcu, "Robust training in high dimensions via block
coordinate geometric median descent", AISTATS 2022)."""

import numbers

import numpy as np

from ._base import RobustAggregator
from ._geometric_median import GeometricMedian, geometric_median, rough_median

__all__ = ["BlockGeometricMedian"]


class BlockGeometricMedian(RobustAggregator):
    """The geometric median on a block of coordinates a step; the rest kept in
    memory.

    Each worker's vector is added to its memory (kept here, one row a worker,
    in worker order: the same on every rank). The block is the
    ``block_size`` largest coordinates (in magnitude) of a robust aggregate of
    those rows (one clipped step from their medoid towards their geometric
    median, :func:`rough_median`), so that corrupted rows cannot choose it;
    the step is the geometric median of the rows restricted to
    the block (zero elsewhere), and every row keeps its other coordinates for
    later steps, as error feedback does. Only ``block_size`` coordinates enter
    the Weiszfeld iterations. Breakdown point 1/2, as the geometric median's.
    The workers' exact statistics are combined by the full geometric median.

    Parameters
    ----------
    block_size : int or float, default=0.1
        Coordinates a step: an integer ``>= 1`` or a fraction in ``(0, 1]``.
    nu, max_iter, tol :
        Of the geometric median (:class:`GeometricMedian`).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import BlockGeometricMedian
    >>> from sklearn_relu.compression import SignSGD
    >>> vectors = [np.array([4.0, 1.0, 3.0]), np.array([4.0, 1.0, 3.0])]
    >>> rule = BlockGeometricMedian(block_size=1)
    >>> rule.aggregate(vectors, SignSGD())    # the largest coordinate
    array([4., 0., 0.])
    >>> rule.aggregate(vectors, SignSGD())    # 3 kept in memory, plus 3
    array([0., 0., 6.])
    """

    def __init__(self, block_size=0.1, nu=1e-6, max_iter=1000, tol=1e-6):
        valid = (
            isinstance(block_size, numbers.Integral) and not isinstance(block_size, bool)
            and block_size >= 1
        ) or (isinstance(block_size, float) and 0 < block_size <= 1)
        if not valid:
            raise ValueError(
                "block_size must be an integer >= 1 or a fraction in (0, 1], got "
                f"{block_size!r}"
            )
        self._median = GeometricMedian(nu=nu, max_iter=max_iter, tol=tol)
        self.block_size = block_size
        self.nu, self.max_iter, self.tol = nu, max_iter, tol
        self.reset()

    def _parameters(self):
        return {"block_size": self.block_size, "nu": self.nu, "max_iter": self.max_iter,
                "tol": self.tol}

    def reset(self):
        self._memory = None

    # The memory, flattened with its shape in front, for a checkpoint.
    def get_state(self):
        if self._memory is None:
            return None
        return np.concatenate([self._memory.shape, self._memory.ravel()]).astype(
            np.float64
        )

    def set_state(self, state):
        if state is None or len(state) == 0:
            self._memory = None
            return
        n_workers, n_values = int(state[0]), int(state[1])
        self._memory = np.array(state[2:], dtype=np.float64).reshape(n_workers, n_values)

    def _block_length(self, n_features):
        if isinstance(self.block_size, float):
            return max(1, int(np.ceil(self.block_size * n_features)))
        return min(self.block_size, n_features)

    def variance_factor(self, n_values):
        """``(1 - rho) / rho`` for a block of ``rho`` of the coordinates: the
        block holds at least that share of the rows' squared norm, the memory
        the rest (as :class:`~sklearn_relu.compression.ErrorFeedback` plans
        for top-k)."""
        rho = self._block_length(n_values) / n_values
        return (1 - rho) / rho

    def center(self, points):
        """One step's direction (an ``(n, d)`` array of the workers' vectors);
        updates the memory."""
        if self._memory is None or self._memory.shape != points.shape:
            self._memory = np.zeros_like(points)
        rows = self._memory
        rows += points
        length = self._block_length(points.shape[1])
        if length < points.shape[1]:
            # The block follows the aggregate the rows agree on (one clipped
            # step from their medoid), not every row's norm: the memory of
            # corrupted rows, which the median never consumes, would steer it.
            center = rough_median(rows)
            block = np.sort(np.argpartition(center * center, -length)[-length:])
        else:
            block = np.arange(points.shape[1])
        direction = np.zeros(points.shape[1])
        direction[block] = geometric_median(
            rows[:, block], nu=self.nu, max_iter=self.max_iter, tol=self.tol
        )
        rows[:, block] = 0.0
        return direction

    def combine_statistics(self, statistics):
        return self._median.combine_statistics(statistics)
