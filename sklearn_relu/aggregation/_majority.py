"""Majority vote: the sign of the sum of the workers' signs (Bernstein et al.,
"signSGD with majority vote is communication efficient and fault tolerant",
ICLR 2019)."""

import numpy as np

from ._base import SumAggregator
from ._median import coordinate_median

__all__ = ["MajorityVote"]


class MajorityVote(SumAggregator):
    """The sign of the sum of the workers' vectors, coordinate by coordinate.

    With :class:`~sklearn_relu.compression.SignSGD` each worker votes with its
    sign. A tie (an even number of workers split evenly) votes ``+1``, so the
    vote is one bit a coordinate: in MPI's master-worker topology rank 0 sends
    it back as ``ceil(d / 8)`` bytes.

    The vote is its own defence against fewer than half Byzantine workers
    (breakdown point 1/2): a coordinate's sign follows the honest majority
    when the honest workers mostly agree. The workers' exact statistics (the
    start) are combined by its real-valued counterpart, ``n_workers`` times
    their coordinate-wise median (the sign of the median of an odd number of
    values is the majority of their signs).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import MajorityVote
    >>> from sklearn_relu.compression import SignSGD
    >>> votes = [np.array([1.0, -1.0, -1.0]), np.array([1.0, -1.0, 1.0]),
    ...          np.array([-1.0, -1.0, 1.0])]
    >>> MajorityVote().aggregate(votes, SignSGD())
    array([ 1., -1.,  1.])
    """

    returns_signs = True
    robust = True
    breakdown_point = "1/2"

    def from_sum(self, total, n_workers, compressor):
        return np.where(total >= 0, 1.0, -1.0).astype(total.dtype)

    def combine_statistics(self, statistics):
        points = np.array(statistics, dtype=np.float64)
        return (points.shape[0] * coordinate_median(points)).astype(
            np.asarray(statistics[0]).dtype, copy=False
        )

    def max_byzantine(self, n_workers):
        return (n_workers - 1) // 2
