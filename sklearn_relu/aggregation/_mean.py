"""The mean of the workers' estimates: what distributed SGD steps along."""

from ._base import SumAggregator

__all__ = ["Mean"]


class Mean(SumAggregator):
    """The mean of the workers' estimates.

    A worker's gradient is its share of the batch's, so for gradients the mean
    is the sum; for signs (each worker's a whole estimate) it is the sum over
    the number of workers. The compressor says which
    (:meth:`~sklearn_relu.compression.Compressor.mean_of_sum`).

    The mean has no defence: its breakdown point is 0, a single Byzantine
    worker moves it arbitrarily. With ``n_byzantine > 0`` a fit warns instead
    of refusing, so that an attack's effect can be seen.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.aggregation import Mean
    >>> from sklearn_relu.compression import Identity, SignSGD
    >>> signs = [np.array([1.0, -1.0]), np.array([1.0, 1.0])]
    >>> Mean().aggregate(signs, SignSGD())
    array([1., 0.])
    >>> Mean().aggregate(signs, Identity())   # gradient shares: their sum
    array([2., 0.])
    """

    def from_sum(self, total, n_workers, compressor):
        return compressor.mean_of_sum(total, n_workers)

    def max_byzantine(self, n_workers):
        # It withstands none, but runs with all but one, warning: running it
        # under attack is how one sees what an attack does.
        return n_workers - 1
