"""Sparse ``X`` (SciPy CSR): what the dense code does with whole rows, done on
the stored entries only, so that ``X`` is never densified (docs/user_guide.rst,
"Sparse data").

The estimator converts CSC (and any other sparse format) to CSR once, when it
validates ``X``. A worker's shard of CSR rows shares ``X``'s entries
(:func:`take_rows`); the mini-batch gradient reads the sampled rows' entries
where they are (the compiled kernel, or :func:`batch_gradient_numpy` where it
is not built); and the passes over all rows that the start, the step size and
the warnings take go through SciPy's sparse products or a block of rows at a
time, each block's temporaries a fraction of a ``d``-vector.
"""

import numpy as np
import scipy.sparse as sp

__all__ = [
    "as_csr", "batch_gradient_numpy", "buffers", "column_moments", "csr_of", "issparse",
    "row_norms", "take_rows",
]

#: Stored entries a block of rows may hold in :func:`row_norms` and
#: :func:`column_moments`: their temporaries stay below a megabyte or so.
BLOCK_ENTRIES = 1 << 16


def issparse(X):
    """Whether ``X`` is a SciPy sparse matrix or array."""
    return sp.issparse(X)


def as_csr(X):
    """``X`` as CSR (converted once where it is in another format), its
    structure checked in full: the compiled kernel trusts it."""
    if X.format != "csr":
        X = X.tocsr()
    try:
        X.check_format(full_check=True)
    except ValueError as error:
        raise ValueError(f"X is not a valid sparse matrix: {error}") from error
    return X


def take_rows(X, rows):
    """``X[rows]``; a slice of CSR rows shares ``X``'s entries (only the row
    offsets are new), where SciPy's slicing would copy them."""
    if not (issparse(X) and isinstance(rows, slice)):
        return X[rows]
    start, stop, step = rows.indices(X.shape[0])
    if step != 1:
        return X[rows]
    first, last = X.indptr[start], X.indptr[stop]
    return csr_of(
        X.data[first:last], X.indices[first:last], X.indptr[start : stop + 1] - first,
        (stop - start, X.shape[1]), kind=type(X),
    )


def csr_of(data, indices, indptr, shape, kind=sp.csr_matrix):
    """The CSR matrix (or array, ``kind``) of these arrays, which it keeps as
    they are: SciPy's constructor copies the entries it is given."""
    X = kind(shape, dtype=data.dtype)
    X.data, X.indices, X.indptr = data, indices, indptr
    return X


def buffers(X):
    """The arrays that hold ``X``'s values (for hashing): the array itself, or
    a sparse matrix's entries, column indices and row offsets."""
    if issparse(X):
        return (X.data, X.indices, X.indptr)
    return (X,)


def _row_blocks(X):
    """``(start, stop)`` of consecutive row blocks of about
    :data:`BLOCK_ENTRIES` stored entries each (at least one row)."""
    n_rows = X.shape[0]
    start = 0
    while start < n_rows:
        stop = int(np.searchsorted(X.indptr, X.indptr[start] + BLOCK_ENTRIES, "right")) - 1
        stop = min(max(stop, start + 1), n_rows)
        yield start, stop
        start = stop


def row_norms(X):
    """``||x_i||^2`` of every row of CSR ``X``, in float64."""
    out = np.zeros(X.shape[0])
    for start, stop in _row_blocks(X):
        first, last = X.indptr[start], X.indptr[stop]
        squares = np.square(X.data[first:last], dtype=np.float64)
        lengths = np.diff(X.indptr[start : stop + 1])
        filled = lengths > 0
        offsets = (X.indptr[start:stop] - first)[filled]
        out[start:stop][filled] = np.add.reduceat(squares, offsets)
    return out


def column_moments(X):
    """``(column sums, column sums of squares)`` of CSR ``X``, in float64."""
    d = X.shape[1]
    sums, squares = np.zeros(d), np.zeros(d)
    nnz = X.indptr[-1]
    # Chunks of at least d entries: each bincount makes a d-vector.
    chunk = max(BLOCK_ENTRIES, d)
    for first in range(0, nnz, chunk):
        last = min(first + chunk, nnz)
        values = X.data[first:last].astype(np.float64)
        columns = X.indices[first:last]
        sums += np.bincount(columns, weights=values, minlength=d)
        squares += np.bincount(columns, weights=values * values, minlength=d)
    return sums, squares


def batch_gradient_numpy(
    X, y, sample_weight, coef, intercept, with_intercept, rows, scale, n_threads=1
):
    """The gradient of :func:`~._gradient.batch_gradient` on CSR ``X`` by
    SciPy (no compiled kernel): the sampled rows gathered (their entries
    only), then two sparse products. ``rows`` sorted; one thread."""
    dtype = X.dtype
    n_features = X.shape[1]
    batch = X[rows]
    z = batch @ coef.astype(dtype, copy=False) + dtype.type(intercept)
    residual = np.maximum(z, 0) - y[rows]
    coefficient = residual * np.heaviside(z, 0.5).astype(dtype, copy=False)
    if sample_weight is not None:
        weights = sample_weight[rows]
        coefficient *= weights
    gradient = np.empty(n_features + with_intercept, dtype=dtype)
    gradient[:n_features] = batch.T @ coefficient
    if with_intercept:
        gradient[n_features] = coefficient.sum(dtype=np.float64)
    gradient *= dtype.type(scale)
    if sample_weight is None:
        return gradient, 0.5 * float(residual @ residual), float(rows.shape[0])
    return (
        gradient,
        0.5 * float(weights @ (residual * residual)),
        float(weights.sum(dtype=np.float64)),
    )
