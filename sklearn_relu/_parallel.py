"""Where the fast mini-batch gradient runs: the compiled kernel or NumPy, on
one thread or two, with BLAS kept to one thread meanwhile.

:mod:`._gradient` holds the loss, its gradient and the reference
implementation; :func:`~._gradient.batch_gradient` hands the work here. Both
fast paths sort the sampled rows (the same multiset, so still uniform with
replacement) and use each row twice -- for ``z = <x, w> + b`` and for
``g += c x`` -- while it is still in cache, so each sampled row is read from
memory once:

- the C kernel (``_kernels.c``, an optional extension built at installation)
  reads the rows in place, without copying them;
- the NumPy path gathers them a cache-sized block at a time into a buffer and
  hands each block to BLAS twice. It is used where the extension could not be
  built, or for an ``X`` whose rows are not contiguous.

:data:`KERNEL` says which one is used. One core cannot draw rows from memory
as fast as both can, so a large batch is split between two threads (both paths
release the GIL), from a process-wide pool that a forked child recreates.
"""

import functools
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np

from . import _sparse

try:
    from . import _kernels
except ImportError:  # the optional extension was not built: the NumPy path
    _kernels = None

__all__ = ["KERNEL", "N_THREADS"]

#: Bytes of rows gathered per block: half of a core's L2 on the machines this was
#: tuned on (2 MiB), so the block stays in cache between its two uses.
BLOCK_BYTES = 1 << 20
#: Batches smaller than this run in the calling thread: handing work to a second
#: thread costs more than it saves on a small batch.
PARALLEL_MIN_BYTES = 4 << 20


#: The fast path in use: ``"c"`` (the compiled kernel) or ``"numpy"``.
KERNEL = "numpy" if _kernels is None else "c"
#: The C path always splits a batch into this many parts, each summed into its
#: own buffer and added in order, whatever the number of threads: the result is
#: then the same bits on one thread or two, in any backend.
KERNEL_PARTS = 2


@functools.cache
def _cores():
    """The cores this process may use: its CPU affinity and container quota
    (joblib's count, taken once: it reads the cgroup files), not the
    machine's."""
    return max(1, joblib.cpu_count())


#: The most threads ``SKLEARN_RELU_THREADS`` may ask for.
_MAX_THREADS = 256


def _default_threads():
    """``SKLEARN_RELU_THREADS`` if set, else 2 capped by the cores and by
    ``OMP_NUM_THREADS`` (which joblib's workers get set to their share)."""
    setting = os.environ.get("SKLEARN_RELU_THREADS")
    if setting is not None:
        if setting.strip().isdigit():
            threads = max(1, int(setting))
            if threads <= _MAX_THREADS:
                return threads
            # The kernel takes a C int; far more threads than cores only slows it.
            warnings.warn(
                f"SKLEARN_RELU_THREADS={setting!r} is more than {_MAX_THREADS} "
                f"threads; using {_MAX_THREADS}",
                UserWarning,
                stacklevel=2,
            )
            return _MAX_THREADS
        # A typo in the environment must not make the package unimportable.
        warnings.warn(
            f"SKLEARN_RELU_THREADS={setting!r} is not a whole number of threads; "
            "ignored",
            UserWarning,
            stacklevel=2,
        )
    limit = min(2, _cores())
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit():
        limit = min(limit, max(1, int(omp)))
    return limit


#: Threads a large batch is split across (the calling thread is one of them).
#: Where workers already fill the cores (one MPI rank per core, joblib worker
#: processes), set ``SKLEARN_RELU_THREADS=1``; joblib's workers get
#: ``OMP_NUM_THREADS`` set to their share, which this also follows.
N_THREADS = _default_threads()



def _splits(n_rows, n_features, itemsize):
    """Whether a batch of ``n_rows`` rows is split between threads (see
    :data:`PARALLEL_MIN_BYTES`)."""
    return n_rows * n_features * itemsize >= PARALLEL_MIN_BYTES


def _sorted_batch(X, rows, n_threads):
    """The batch's rows sorted and bounds-checked, and the thread count to use."""
    rows = np.sort(np.asarray(rows, dtype=np.intp))
    # Neither the kernel nor the gather checks indices; sorted, two checks do.
    if rows.shape[0] and (rows[0] < 0 or rows[-1] >= X.shape[0]):
        raise IndexError(f"batch rows must lie in [0, {X.shape[0]})")
    return rows, N_THREADS if n_threads is None else max(1, int(n_threads))


def _kernel_layout(X):
    """Whether the C kernel can read ``X`` in place: float rows of unit stride,
    or CSR rows (float entries, int32 or int64 indices and offsets alike)."""
    if _sparse.issparse(X):
        return (
            X.format == "csr"
            and X.dtype in (np.float32, np.float64)
            and X.indices.dtype == X.indptr.dtype
            and X.indices.dtype in (np.int32, np.int64)
            and all(a.ndim == 1 and a.flags.c_contiguous
                    for a in (X.data, X.indices, X.indptr))
        )
    return (
        isinstance(X, np.ndarray)
        and X.ndim == 2
        and X.dtype in (np.float32, np.float64)
        and X.strides[1] == X.itemsize
        and X.strides[0] % X.itemsize == 0
    )


def _batch_gradient_csr_kernel(
    X, y, sample_weight, coef, intercept, with_intercept, rows, scale, n_threads
):
    """:func:`_batch_gradient_kernel` for CSR ``X``: one pass over the sorted
    rows on the calling thread (a batch of sparse rows is too little work to
    share), in the order the compiled step loop takes too."""
    dtype = X.dtype
    n_features = X.shape[1]
    coef = np.ascontiguousarray(coef, dtype=dtype)
    intercept = float(dtype.type(intercept))
    y = np.ascontiguousarray(y, dtype=dtype)
    if sample_weight is not None:
        sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)
    gradient = np.empty(n_features + with_intercept, dtype=dtype)
    c_sum, loss_sum, weight_sum = _kernels.csr_gradient_part(
        X, y, sample_weight, coef, intercept, rows, scale, gradient[:n_features]
    )
    if with_intercept:
        gradient[n_features] = c_sum
    return gradient, loss_sum, weight_sum


def _batch_gradient_kernel(
    X, y, sample_weight, coef, intercept, with_intercept, rows, scale, n_threads
):
    """The gradient of :func:`~._gradient.batch_gradient` by the C kernel, at
    ``coef`` and ``intercept``; its last value is the intercept's when
    ``with_intercept``. ``rows`` sorted by :func:`_sorted_batch`."""
    dtype = X.dtype
    n_rows, n_features = rows.shape[0], X.shape[1]
    coef = np.ascontiguousarray(coef, dtype=dtype)
    # The kernel adds b in double; round it to the dtype first, as NumPy would.
    intercept = float(dtype.type(intercept))
    y = np.ascontiguousarray(y, dtype=dtype)
    if sample_weight is not None:
        sample_weight = np.ascontiguousarray(sample_weight, dtype=dtype)
    bounds = [k * n_rows // KERNEL_PARTS for k in range(KERNEL_PARTS + 1)]
    parts = [rows[bounds[k] : bounds[k + 1]] for k in range(KERNEL_PARTS)]
    outputs = np.empty((KERNEL_PARTS, n_features), dtype=dtype)

    def part(k):
        return _kernels.gradient_part(
            X, y, sample_weight, coef, intercept, parts[k], scale, outputs[k]
        )

    if n_threads == 1 or not _splits(n_rows, n_features, dtype.itemsize):
        sums = [part(k) for k in range(KERNEL_PARTS)]
    else:
        # The kernel releases the GIL: part 0 runs here while the pool runs the
        # rest. Each part has its own output, added below in a fixed order.
        pool = _pool(min(n_threads, KERNEL_PARTS) - 1)
        futures = [pool.submit(part, k) for k in range(1, KERNEL_PARTS)]
        sums = [part(0)] + [future.result() for future in futures]

    # Parts added in order (a fixed sequence of additions, not np.sum's).
    gradient = np.empty(n_features + with_intercept, dtype=dtype)
    coef_gradient = gradient[:n_features]
    coef_gradient[...] = outputs[0]
    for k in range(1, KERNEL_PARTS):
        coef_gradient += outputs[k]
    c_sum, loss_sum, weight_sum = sums[0]
    for part_sums in sums[1:]:
        c_sum += part_sums[0]
        loss_sum += part_sums[1]
        weight_sum += part_sums[2]
    if with_intercept:
        gradient[n_features] = c_sum
    return gradient, loss_sum, weight_sum


def _batch_gradient_numpy(
    X, y, sample_weight, coef, intercept, with_intercept, rows, scale, n_threads
):
    """:func:`_batch_gradient_kernel` by NumPy and BLAS alone."""
    n_rows, n_features = rows.shape[0], X.shape[1]
    dtype = X.dtype
    coef = coef.astype(dtype, copy=False)
    intercept = dtype.type(intercept)
    block = max(1, BLOCK_BYTES // max(1, n_features * dtype.itemsize))
    if not _splits(n_rows, n_features, dtype.itemsize):
        n_threads = 1
    n_threads = min(n_threads, max(1, n_rows // block))

    # Contiguous runs of the sorted rows, one per thread, so each thread reads
    # its own part of X front to back.
    bounds = np.linspace(0, n_rows, n_threads + 1).astype(int)
    parts = [rows[bounds[k] : bounds[k + 1]] for k in range(n_threads)]
    args = (X, y, sample_weight, coef, intercept, block)
    if n_threads == 1:
        results = [_gradient_part(parts[0], *args)]
    else:
        with _single_threaded_blas:
            pool = _pool(n_threads - 1)
            futures = [pool.submit(_gradient_part, part, *args) for part in parts[1:]]
            results = [_gradient_part(parts[0], *args)]
            results += [future.result() for future in futures]

    gradient = np.empty(n_features + with_intercept, dtype=dtype)
    gradient[:n_features] = results[0][0]
    for result in results[1:]:
        gradient[:n_features] += result[0]
    if with_intercept:
        gradient[n_features] = sum(result[1] for result in results)
    gradient *= dtype.type(scale)
    loss_sum = sum(result[2] for result in results)
    weight_sum = (
        float(n_rows)
        if sample_weight is None
        else sum(result[3] for result in results)
    )
    return gradient, loss_sum, weight_sum


def _gradient_part(rows, X, y, sample_weight, coef, intercept, block):
    """``(X_rows^T c, sum c, loss_sum, weight_sum)`` over sorted ``rows``.

    The per-block work is kept to a handful of NumPy calls writing into
    preallocated arrays: with two threads sharing the GIL, every Python-level
    operation in this loop is paid for by both.
    """
    dtype = X.dtype
    n_rows, n_features = rows.shape[0], X.shape[1]
    buffer = _buffer(min(block, n_rows), n_features, dtype)
    y_rows = y[rows]
    z = np.empty(n_rows, dtype=dtype)
    residual = np.empty(n_rows, dtype=dtype)
    coefficient = np.empty(n_rows, dtype=dtype)
    weights = None if sample_weight is None else sample_weight[rows]
    n_blocks = -(-n_rows // block)
    # One partial gradient per block, summed once at the end: cheaper than an
    # accumulate (a temporary and an add) per block.
    partials = np.empty((n_blocks, n_features), dtype=dtype)
    for index, start in enumerate(range(0, n_rows, block)):
        stop = min(start + block, n_rows)
        X_block = buffer[: stop - start]
        # mode="clip" writes straight into the buffer; the default mode
        # ("raise") buffers ``out`` and copies twice. Rows are in range.
        np.take(X, rows[start:stop], axis=0, out=X_block, mode="clip")
        z_block = np.matmul(X_block, coef, out=z[start:stop])
        if intercept:
            z_block += intercept
        residual_block = np.maximum(z_block, 0, out=residual[start:stop])
        residual_block -= y_rows[start:stop]
        # heaviside(z, 1/2) is the generalized derivative: 1, 0, 1/2 at zero.
        coefficient_block = np.multiply(
            residual_block, np.heaviside(z_block, 0.5), out=coefficient[start:stop]
        )
        if weights is not None:
            coefficient_block *= weights[start:stop]
        # Second use of the block, while it is still in cache.
        np.matmul(coefficient_block, X_block, out=partials[index])
    gradient = partials.sum(axis=0) if n_blocks else np.zeros(n_features, dtype)
    if weights is None:
        loss_sum, weight_sum = float(residual @ residual), 0.0
    else:
        loss_sum = float(weights @ (residual * residual))
        weight_sum = float(weights.sum(dtype=np.float64))
    return gradient, float(coefficient.sum()), 0.5 * loss_sum, weight_sum


_local = threading.local()


def _buffer(n_rows, n_features, dtype):
    """This thread's gather buffer of at least ``n_rows`` rows, reused across
    steps so that a step allocates nothing the size of a block."""
    buffer = getattr(_local, "buffer", None)
    if (
        buffer is None
        or buffer.shape[0] < n_rows
        or buffer.shape[1] != n_features
        or buffer.dtype != dtype
    ):
        buffer = _local.buffer = np.empty((max(n_rows, 1), n_features), dtype=dtype)
    return buffer


class _BLASThreads:
    """The BLAS thread counts of the process while limits are in force.

    Every library runs with the smallest limit in force, or its own setting
    if that is lower; when the last limit ends, each gets back the setting it
    had when the first began. One registry for every limit, so that limits
    entered and left in any order, from any threads, never leave a lowered
    count behind. Without threadpoolctl or with a BLAS it does not know,
    nothing is changed.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._limits = []  # the limits in force, one entry per holder
        self._original = None  # {library: its setting before the first limit}

    def enter(self, limit):
        with self._lock:
            if not self._limits:
                self._original = self._settings()
            self._limits.append(limit)
            self._apply()

    def leave(self, limit):
        with self._lock:
            if limit not in self._limits:  # entered before a fork, in the parent
                return
            self._limits.remove(limit)
            self._apply()
            if not self._limits:
                self._original = None

    def after_fork(self):
        # The child has one thread: no holder is inside; a lock held by another
        # of the parent's threads would never be released.
        self._lock = threading.Lock()
        self._limits = []
        self._original = None

    @staticmethod
    def _settings():
        try:
            return {
                library: library.get_num_threads()
                for library in _blas_controller().lib_controllers
            }
        except Exception:  # no threadpoolctl or an unknown BLAS: leave it be
            return {}

    def _apply(self):
        lowest = min(self._limits, default=None)
        for library, original in self._original.items():
            wanted = original if lowest is None else min(original, lowest)
            try:
                if library.get_num_threads() != wanted:
                    library.set_num_threads(wanted)
            except Exception:  # a BLAS that refuses: leave it be
                pass


_blas_threads = _BLASThreads()


class _BLASLimit:
    """While any thread is inside, BLAS uses at most ``threads()`` threads a
    call (never more than it was set to): a context manager, re-entrant
    across threads, combined with every other limit by :class:`_BLASThreads`.
    """

    def __init__(self, threads):
        self._threads = threads
        self._entered = threading.local()  # what this thread entered with

    def __enter__(self):
        limit = max(1, int(self._threads()))
        stack = self._entered.__dict__.setdefault("limits", [])
        stack.append(limit)
        _blas_threads.enter(limit)

    def __exit__(self, *exc):
        _blas_threads.leave(self._entered.limits.pop())


_controller = None


def _blas_controller():
    """threadpoolctl's controller of the BLAS libraries loaded, made on first
    use and kept for the life of the process (finding them takes milliseconds):
    a BLAS loaded later is not limited."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


#: While a threaded gradient runs, BLAS uses one thread per call. Each of our
#: threads multiplies its own block; a BLAS that also splits each small
#: product across the cores makes the threads queue for its pool (and its idle
#: workers spin), which costs more than it saves.
_single_threaded_blas = _BLASLimit(lambda: 1)

# While a fit runs, BLAS (the fit's full passes over the data: the start, the
# step size, the exact losses, the validation scores) uses only the cores the
# step threads leave it, and at least one. Its idle workers spin for a while
# after every threaded call, and the SGD steps that follow a full pass then run
# at the scheduler's tick. Steps on one thread (a batch too small to split)
# leave BLAS the other cores: there a limit only slowed the passes. The
# figures are in docs/benchmarks.rst, "Threads".
# scikit-learn's KMeans limits BLAS inside its threaded loop for the same reason.
def blas_beside_steps(cores, batch_rows, n_features, itemsize):
    """The BLAS limit of a fit whose process may keep ``cores`` cores busy and
    whose steps draw ``batch_rows`` rows of ``n_features`` items of
    ``itemsize`` bytes a worker: ``cores`` minus the step's threads plus one
    (the calling thread waits while BLAS runs), at least one."""
    threads = N_THREADS if _splits(batch_rows, n_features, itemsize) else 1
    return _BLASLimit(lambda: max(1, cores - threads + 1))


_pools = {}
_pools_lock = threading.Lock()


def _pool(n_workers):
    """A process-wide thread pool of ``n_workers`` threads, created on first use."""
    with _pools_lock:
        pool = _pools.get(n_workers)
        if pool is None:
            pool = _pools[n_workers] = ThreadPoolExecutor(
                n_workers, thread_name_prefix="sklearn_relu_gradient"
            )
        return pool


def _forget_pools():
    # A forked child inherits the pool objects (and maybe a held lock) but not
    # the threads behind them.
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()
    _blas_threads.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)
