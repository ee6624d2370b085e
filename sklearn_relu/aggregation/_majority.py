"""Majority vote: the sign of the sum of the workers' signs (Bernstein et al.,
"signSGD with majority vote is communication efficient and fault tolerant",
ICLR 2019)."""

import numpy as np

from ._base import Aggregator

__all__ = ["MajorityVote"]


class MajorityVote(Aggregator):
    """The sign of the sum of the workers' vectors, coordinate by coordinate.

    With :class:`~sklearn_relu.compression.SignSGD` each worker votes with its
    sign. A tie (an even number of workers split evenly) votes ``+1``, so the
    vote is one bit a coordinate: in MPI's master-worker topology rank 0 sends
    it back as ``ceil(d / 8)`` bytes.

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

    def from_sum(self, total, n_workers, compressor):
        return np.where(total >= 0, 1.0, -1.0).astype(total.dtype)
