"""How the training rows are dealt to the workers: ``ReLURegressor(shards=...)``.

``shards=None`` gives each worker an equal contiguous block of rows
(:func:`~sklearn_relu._worker.shard_bounds`). A splitter gives heterogeneous
shards, as robustness studies use them: an object with a method
``split(X, y, n_workers)`` returning one array of row indices a worker, a
partition of the rows into non-empty shards. :class:`DirichletShards` is the
literature's: a Dirichlet(alpha) share of each quantile bin of the target (or
of a feature) per worker.
"""

import numbers

import numpy as np

from ._registry import ParameterIdentity

__all__ = ["DirichletShards", "check_partition"]


class DirichletShards(ParameterIdentity):
    """Non-i.i.d. shards: each quantile bin's rows dealt to the workers in
    Dirichlet(alpha) proportions.

    The rows are cut into ``n_bins`` bins of (nearly) equal counts by the
    quantiles of the target (``by="target"``) or of feature column ``by``.
    For each bin, the workers' shares are drawn from a symmetric
    Dirichlet(``alpha``) distribution and the bin's rows, shuffled, are
    dealt in those proportions; for ``alpha=inf`` they are dealt round robin
    (shards differ by at most one row). Small ``alpha``
    gives each worker a few bins: 0.1 is very heterogeneous, 1 moderately,
    ``inf`` i.i.d. (every worker's targets spread like the whole set's). A
    worker left without rows takes one from the largest shard, so that every
    worker has data.

    Parameters
    ----------
    alpha : float, default=1.0
        Concentration, ``> 0``; ``float("inf")`` for equal shares.
    n_bins : int, default=10
        Quantile bins, ``>= 1``.
    by : "target" or int, default="target"
        What the bins are quantiles of: ``y``, or the column ``by`` of ``X``.
    random_state : int, numpy.random.Generator or None, default=0
        Seed of the proportions and the shuffles. A fit's shards are the same
        on every backend for an int.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu import DirichletShards
    >>> y = np.arange(100.0)
    >>> shards = DirichletShards(alpha=0.1, n_bins=4).split(None, y, 3)
    >>> sorted(np.concatenate(shards).tolist()) == list(range(100))
    True
    >>> [len(rows) for rows in DirichletShards(alpha=float("inf")).split(None, y, 4)]
    [25, 25, 25, 25]
    """

    def __init__(self, alpha=1.0, n_bins=10, by="target", random_state=0):
        if not (isinstance(alpha, numbers.Real) and alpha > 0) or np.isnan(alpha):
            raise ValueError(f"alpha must be a float > 0 (inf allowed), got {alpha!r}")
        if not isinstance(n_bins, numbers.Integral) or isinstance(n_bins, bool) or n_bins < 1:
            raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
        if by != "target" and (
            not isinstance(by, numbers.Integral) or isinstance(by, bool) or by < 0
        ):
            raise ValueError(f"by must be 'target' or a column index >= 0, got {by!r}")
        self.alpha, self.n_bins, self.by = alpha, n_bins, by
        self.random_state = random_state

    def _parameters(self):
        return {"alpha": self.alpha, "n_bins": self.n_bins, "by": self.by,
                "random_state": self.random_state}

    def _values(self, X, y):
        if self.by == "target":
            return np.asarray(y)
        X = np.asarray(X)
        if self.by >= X.shape[1]:
            raise ValueError(
                f"DirichletShards(by={self.by}) bins column {self.by}, but X has "
                f"{X.shape[1]} columns"
            )
        return X[:, self.by]

    def split(self, X, y, n_workers):
        """One sorted array of row indices a worker, a partition of the rows."""
        values = self._values(X, y)
        n_rows = values.shape[0]
        if n_workers > n_rows:
            raise ValueError(f"cannot deal {n_rows} rows to {n_workers} workers")
        rng = np.random.default_rng(self.random_state)
        # Equal-count quantile bins: a row's bin is its rank's.
        ranks = np.empty(n_rows, dtype=np.int64)
        ranks[np.argsort(values, kind="stable")] = np.arange(n_rows)
        bins = ranks * self.n_bins // n_rows
        owner = np.empty(n_rows, dtype=np.int64)
        dealt = 0
        for b in range(self.n_bins):
            rows = rng.permutation(np.flatnonzero(bins == b))
            if np.isinf(self.alpha):
                # Equal shares: round robin, on from where the last bin ended,
                # so that shards differ by at most one row.
                owner[rows] = (dealt + np.arange(rows.shape[0])) % n_workers
                dealt += rows.shape[0]
                continue
            shares = rng.dirichlet(np.full(n_workers, float(self.alpha)))
            cuts = np.round(np.cumsum(shares) * rows.shape[0]).astype(np.int64)
            owner[rows] = np.minimum(
                np.searchsorted(cuts, np.arange(rows.shape[0]), side="right"),
                n_workers - 1,
            )
        counts = np.bincount(owner, minlength=n_workers)
        for worker in np.flatnonzero(counts == 0):
            largest = int(np.argmax(counts))
            owner[np.flatnonzero(owner == largest)[-1]] = worker
            counts[largest] -= 1
            counts[worker] += 1
        return [np.flatnonzero(owner == worker) for worker in range(n_workers)]


def check_partition(shards, n_rows, n_workers):
    """``shards`` as ``n_workers`` sorted int64 arrays, or a ``ValueError``
    unless they are a partition of ``range(n_rows)`` into non-empty parts."""
    shards = [np.sort(np.asarray(rows, dtype=np.int64)) for rows in shards]
    if len(shards) != n_workers:
        raise ValueError(f"shards.split gave {len(shards)} shards for {n_workers} workers")
    if any(rows.shape[0] == 0 for rows in shards):
        raise ValueError("shards.split gave a worker no rows")
    every = np.concatenate(shards)
    if every.shape[0] != n_rows or not np.array_equal(np.sort(every), np.arange(n_rows)):
        raise ValueError(
            f"shards.split must deal each of the {n_rows} training rows to exactly "
            "one worker"
        )
    return shards
