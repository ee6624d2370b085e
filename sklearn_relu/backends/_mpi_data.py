"""How the training rows reach the MPI ranks: ``MPIBackend(data=...)``.

Each function is collective (every rank of ``comm`` calls it at the same
point) and returns what :meth:`~sklearn_relu.backends.Backend.prepare_data`
returns, with the number of rows of all shards together when the rows a rank
holds are already its shard (None when every rank holds every row and the
backend shards them at the start of the fit):

- :func:`prepare_everywhere`: ``data="all"``, every rank validates its own
  copy;
- :func:`prepare_on_root`: ``data="root"``, rank 0 validates and scatters
  each rank its shard's rows (:func:`scatter_rows`);
- :func:`prepare_local`: ``data="local"``, each rank's own rows are its
  shard; the ranks agree on what describes them all.

An error on one rank raises on every rank: a rank that fails must not leave
the others waiting in the fit's first collective.
"""

import math
from dataclasses import replace

import numpy as np

from .._sparse import csr_of, issparse
from .._worker import shard_bounds
from ._mpi_errors import RemoteWorkerError

__all__ = ["prepare_everywhere", "prepare_local", "prepare_on_root", "scatter_rows"]


def prepare_everywhere(comm, prepare, X, y, sample_weight):
    """``prepare`` on this rank's data; an error on any rank raises on all."""
    try:
        data, error = prepare(X, y, sample_weight), None
    except Exception as exc:
        data, error = None, exc
    failed = comm.allgather(error is not None)
    if error is not None:
        raise error
    if any(failed):
        raise RemoteWorkerError(
            f"MPI rank(s) {[r for r, bad in enumerate(failed) if bad]} could "
            "not use their data; see the error reported there"
        )
    return data


def prepare_on_root(comm, prepare, X, y, sample_weight):
    """(this rank's shard of the data only rank 0 passed, the number of rows
    of all shards).

    Rank 0 validates the data and keeps the early-stopping validation set;
    every rank receives its shard's rows, described as rank 0's data is.
    """
    rank = comm.Get_rank()
    given = comm.allgather(any(a is not None for a in (X, y, sample_weight)))
    if any(given[1:]):
        raise ValueError(
            "MPIBackend(data='root') takes the data from rank 0 only, but "
            f"rank(s) {[r for r in range(1, len(given)) if given[r]]} passed "
            "X, y or sample_weight too: pass None there, or use data='all'"
        )
    header = data = rows = None
    if rank == 0:
        try:
            data = prepare(X, y, sample_weight)
            rows = [
                None if a is None else a if issparse(a) else np.ascontiguousarray(a)
                for a in (data.X, data.y, data.sample_weight)
            ]
            layouts = [
                None if a is None else _csr_layout(a, comm.Get_size()) if issparse(a)
                else (a.shape[1:], a.dtype.str)
                for a in rows
            ]
            header = (data.summary(), layouts)
        except Exception as exc:  # the other ranks must not wait for data
            comm.bcast(("error", repr(exc)), root=0)
            raise
    header = comm.bcast(header, root=0)
    if header[0] == "error":
        raise RemoteWorkerError(f"rank 0 could not prepare its data: {header[1]}")
    summary, layouts = header
    shards = [
        None if layout is None else (scatter_csr if layout[0] == "csr" else scatter_rows)(
            comm, rows[i] if rank == 0 else None, summary.n_samples, *layout
        )
        for i, layout in enumerate(layouts)
    ]
    shard = replace(
        summary, X=shards[0], y=shards[1], sample_weight=shards[2],
        validation=None if data is None else data.validation,
    )
    return shard, summary.n_samples


def scatter_rows(comm, array, n_samples, row_shape, dtype):
    """This rank's shard of rank 0's ``array``: its rows only, one buffer
    per rank (``Scatterv`` counted in rows, so any size fits an MPI count)."""
    from mpi4py.util.dtlib import from_numpy_dtype

    size = comm.Get_size()
    bounds = [shard_bounds(n_samples, size, r) for r in range(size)]
    start, stop = bounds[comm.Get_rank()]
    shard = np.empty((stop - start, *row_shape), dtype=np.dtype(dtype))
    row = from_numpy_dtype(shard.dtype).Create_contiguous(
        math.prod(row_shape)
    ).Commit()
    try:
        counts = [b - a for a, b in bounds]
        displacements = [a for a, _ in bounds]
        send = None if array is None else [array, counts, displacements, row]
        comm.Scatterv(send, [shard, row], root=0)
    finally:
        row.Free()
    return shard


def _csr_layout(X, size):
    """What every rank needs to receive its shard of CSR ``X``: the features,
    the dtypes of the entries and of the indices, each rank's entries."""
    bounds = [shard_bounds(X.shape[0], size, r) for r in range(size)]
    entries = [int(X.indptr[stop] - X.indptr[start]) for start, stop in bounds]
    return "csr", X.shape[1], X.dtype.str, X.indices.dtype.str, entries


def scatter_csr(comm, X, n_samples, kind, n_features, dtype, index_dtype, entries):
    """This rank's shard of rank 0's CSR ``X`` (see :func:`_csr_layout`): its
    rows' entries, column indices and row offsets, one buffer each."""
    from mpi4py.util.dtlib import from_numpy_dtype

    size, rank = comm.Get_size(), comm.Get_rank()
    bounds = [shard_bounds(n_samples, size, r) for r in range(size)]
    start, stop = bounds[rank]
    index_dtype = np.dtype(index_dtype)
    counts = [b - a for a, b in bounds]
    # Each rank's first offsets (its last is its first plus its entries: a
    # Scatterv may read each item of rank 0's buffer once only).
    offsets = np.empty(stop - start, dtype=index_dtype)
    starts = [a for a, _ in bounds]
    comm.Scatterv(
        None if X is None
        else [X.indptr[:-1], (counts, starts), from_numpy_dtype(index_dtype)],
        offsets, root=0,
    )
    first = [0] * size if X is None else [int(X.indptr[a]) for a, _ in bounds]
    parts = []
    for name, part_dtype in (("data", np.dtype(dtype)), ("indices", index_dtype)):
        part = np.empty(entries[rank], dtype=part_dtype)
        send = None if X is None else [
            getattr(X, name), (entries, first), from_numpy_dtype(part_dtype)
        ]
        comm.Scatterv(send, part, root=0)
        parts.append(part)
    begin = offsets[0] if offsets.shape[0] else 0
    indptr = np.append(offsets - begin, index_dtype.type(entries[rank]))
    return csr_of(parts[0], parts[1], indptr, (stop - start, n_features))


def prepare_local(comm, MPI, prepare, X, y, sample_weight):
    """(this rank's own rows, prepared, as its shard; the number of rows of
    all ranks).

    The ranks agree on the features, dtype, column names and weighting of
    their rows, and the sample weights and the losses that describe the
    target are those of all rows together.
    """
    _refuse_empty(comm.allgather(_n_rows(X)), "")
    data = prepare_everywhere(comm, prepare, X, y, sample_weight)
    names = None if data.feature_names is None else list(data.feature_names)
    layouts = comm.allgather(
        (data.X.shape[0], data.X.shape[1], data.X.dtype.str, names,
         data.sample_weight is not None)
    )
    _refuse_empty([layout[0] for layout in layouts], " (after the early-stopping split)")
    _refuse_other_columns(layouts)
    n_samples = sum(layout[0] for layout in layouts)
    sample_weight = data.sample_weight
    if sample_weight is not None:
        # The rank normalized its weights to mean 1 over its own rows; the
        # fit needs mean 1 over all rows, from every rank's total.
        shares = comm.allgather((data.weight_sum, data.weight_count))
        weight_total = math.fsum(total for total, _ in shares)
        count = sum(n for _, n in shares)
        sample_weight = sample_weight * (
            (data.weight_sum / data.weight_count) * (count / weight_total)
        )
    zero_loss, mean_loss = _target_losses(comm, MPI, data.y, sample_weight)
    shard = replace(
        data, sample_weight=sample_weight, n_samples=n_samples,
        zero_loss=zero_loss, mean_loss=mean_loss,
        any_positive_target=comm.allreduce(data.any_positive_target, op=MPI.LOR),
    )
    return shard, n_samples


def _n_rows(X):
    try:
        return len(X)
    except TypeError:
        return None  # not array-like: prepare() names the problem


def _refuse_empty(n_rows, when):
    """Refuse ranks with no rows (``n_rows``: one count a rank)."""
    empty = [r for r, n in enumerate(n_rows) if n == 0]
    if empty:
        raise ValueError(
            f"MPIBackend(data='local'): rank(s) {empty} have no training rows; "
            f"every rank is one worker and needs at least one row{when}: give "
            "them rows, or launch fewer ranks"
        )


def _refuse_other_columns(layouts):
    """Refuse ranks whose rows differ in features, dtype, column names or
    weighting (``layouts``: one ``(rows, features, dtype, names, weighted)``
    a rank)."""
    signatures = {
        (n, dtype, None if nm is None else tuple(nm), weighted)
        for _, n, dtype, nm, weighted in layouts
    }
    if len(signatures) > 1:
        described = [
            f"rank {r}: {n} features, {dtype}, names {nm}, weights {w}"
            for r, (_, n, dtype, nm, w) in enumerate(layouts)
        ]
        raise ValueError(
            "MPIBackend(data='local'): the ranks' rows must have the same "
            "features, dtype, column names and all or none sample weights; "
            "got " + "; ".join(described)
        )


def _target_losses(comm, MPI, y, sample_weight):
    """(the loss of the zero model, the loss of predicting the weighted mean
    of ``y``), over every rank's rows."""
    y64 = y.astype(np.float64)
    s = np.ones_like(y64) if sample_weight is None else sample_weight
    sums = np.array([s @ (y64 * y64), s.sum(dtype=np.float64), s @ y64])
    totals = np.empty_like(sums)
    comm.Allreduce(sums, totals, op=MPI.SUM)
    # In a second pass about the mean of all rows' y (not y^2 - mean^2, which
    # cancels for nearly constant y).
    spread = np.array([s @ np.square(y64 - totals[2] / totals[1])])
    total_spread = np.empty_like(spread)
    comm.Allreduce(spread, total_spread, op=MPI.SUM)
    return 0.5 * totals[0] / totals[1], 0.5 * total_spread[0] / totals[1]
