"""Many SGD steps in one call: the in-process fast path of a fit.

On a small problem the Python around a step -- drawing and sorting the batch,
calling the kernel, compressing and decoding the message, summing, updating,
checking -- takes far longer than the step's arithmetic (the figures are in
docs/benchmarks.rst, "How a fit takes its steps"). :func:`run_steps` hands a whole epoch of
steps to the compiled loop ``_kernels.sgd_steps``, which does the same
operations in the same order on the workers' own random generators, so the
model is the same to the last bit as the step-by-step path of
:meth:`Backend.step <sklearn_relu.backends.Backend.step>` (which stays the
reference, and what every other case runs):

- the in-process backend, the mean aggregation, a constant step;
- exact gradients (``solver="sgd"``) or QSGD with the packed wire format;
- the C kernel built, every shard's rows contiguous.

A worker's batch of :data:`~sklearn_relu._parallel.PARALLEL_MIN_BYTES` or more
is split in the same two parts as the per-step path splits it, the second
computed by the process's helper thread (started on first use), which waits
between steps without sleeping through them (the per-step path's pooled thread
sleeps between steps, and waking it cost about what it saved) and sleeps once
the steps stop: :data:`~sklearn_relu._parallel.N_THREADS` threads, the same
bits on one or two.
"""

import functools

import numpy as np

from . import _parallel
from ._exceptions import DivergenceError
from ._schedule import ConstantStep
from .aggregation import Mean
from .compression import QSGD, Identity, MessageError

__all__ = ["SGDUpdate", "run_steps"]


class SGDUpdate:
    """The step ``params - learning_rate.at(t) * direction`` at the ``t``-th call,
    counting from ``first``, checked; ``learning_rate`` is a schedule from
    :mod:`._schedule`.

    With ``local_steps=H`` a call is a round of ``H`` local steps (the
    direction the workers' model change over the round's first step size, see
    :meth:`~sklearn_relu._worker.ShardWorker.local_change`): ``t`` then counts
    local steps, ``H`` a call.
    """

    def __init__(self, learning_rate, first=0, local_steps=1):
        self.learning_rate = learning_rate
        self.first, self.local_steps = first, local_steps
        #: Calls so far (rounds; steps when ``local_steps`` is 1).
        self.taken = 0

    def __call__(self, params, gradient):
        # A Python float, not a NumPy float64 scalar: under NumPy's promotion
        # rules the scalar would turn float32 parameters into float64.
        step = self.first + self.taken * self.local_steps
        self.taken += 1
        new = params - self.learning_rate.at(step) * gradient
        if not np.all(np.isfinite(new)):
            raise DivergenceError(self.divergence_reason())
        return new

    def skip(self, n_steps):
        """Count ``n_steps`` steps taken elsewhere (by the compiled loop)."""
        self.taken += n_steps

    def divergence_reason(self):
        return f"learning_rate={self.learning_rate:.3g} is too large for this data"


# What the compiled loop reports when it stops early (STEPS_* in _kernels.c).
_GRADIENT_OVERFLOW, _NORM_BEYOND_FLOAT32, _DECODED_OVERFLOW, _UPDATE_OVERFLOW = (
    1, 2, 3, 4,
)


_ZERO_SEED = 0


def _quantizer(compressor):
    """QSGD's levels for the compiled loop: 0 for exact gradients, None when the
    compiled loop does not run this compressor."""
    if type(compressor) is Identity:
        return 0
    if type(compressor) is QSGD and compressor.encoding == "packed":
        return compressor.levels
    return None


def fusable(backend, params, update):
    """Whether :func:`run_steps` gives ``backend``'s steps (see the module
    documentation for the cases it covers)."""
    kernels = _parallel._kernels
    workers = getattr(backend, "workers", None)
    if (
        kernels is None
        or not hasattr(kernels, "sgd_steps")
        or not workers
        or not isinstance(update, SGDUpdate)
        or update.local_steps != 1
        or not all(worker.sends_gradients for worker in workers)
        or type(update.learning_rate) is not ConstantStep
        or type(backend.aggregator) is not Mean
        or _quantizer(backend.compressor) is None
        or params.dtype not in (np.float32, np.float64)
    ):
        return False
    for worker in workers:
        X = worker.X
        if (
            not _parallel._kernel_layout(X)
            or X.dtype != params.dtype
            or not all(
                v.dtype == X.dtype and v.flags.c_contiguous
                for v in (worker.y, worker.sample_weight) if v is not None
            )
            or not 1 <= X.shape[0] < 2**32 - 1
            or worker.compressor.stateful
            or worker.attack is not None  # a Byzantine worker lies step by step
            or not hasattr(worker.bit_generator, "capsule")
        ):
            return False
    return True


#: Steps per compiled call at most: Python handles signals (Ctrl-C) between
#: calls, a fraction of a second apart even for large batches.
MAX_STEPS_PER_CALL = 256


def run_steps(backend, params, update, n_steps):
    """``n_steps`` steps of the in-process ``backend`` from ``params`` by the
    compiled loop; the new parameters. The caller checks :func:`fusable`."""
    params = np.array(params, order="C")  # the loop updates it in place
    for start in range(0, n_steps, MAX_STEPS_PER_CALL):
        _run_call(backend, params, update, min(MAX_STEPS_PER_CALL, n_steps - start))
    return params


@functools.lru_cache(maxsize=64)
def _message_nbytes(compressor, dtype, n_values):
    """The size of a message of ``n_values`` of ``dtype``: a zero vector's
    (but for QSGD messages with a norm exponent, 2 bytes more)."""
    return len(compressor.compress(np.zeros(n_values, dtype), _ZERO_SEED))


def _run_call(backend, params, update, n_steps):
    workers = backend.workers
    compressor = backend.compressor
    levels = _quantizer(compressor)
    n_values = params.shape[0]
    bucket = n_values
    if levels and compressor.bucket_size is not None:
        bucket = compressor.bucket_size
    arguments = [
        (
            worker.X, worker.y, worker.sample_weight, worker.bit_generator.capsule,
            worker.batch_size, worker.scale, worker.batch_loss_sums,
        )
        for worker in workers
    ]
    # The generators' own locks, as Generator's methods take them.
    locks = [worker.bit_generator.lock for worker in workers]
    for lock in locks:
        lock.acquire()
    try:
        status, done, which, value, n_scaled, compute, communicate = (
            _parallel._kernels.sgd_steps(
                arguments, params, n_steps, float(update.learning_rate),
                workers[0].X.shape[1], levels, bucket, _parallel.N_THREADS,
                _parallel.PARALLEL_MIN_BYTES,
            )
        )
    finally:
        for lock in reversed(locks):
            lock.release()
    update.skip(done)
    record = backend.record
    record.compute_seconds += compute
    record.communicate_seconds += communicate
    # The per-step path counts a step's messages once every worker has sent
    # its own: a step that failed while decoding or updating counts them too.
    n_messages = done * len(workers)
    if status in (_DECODED_OVERFLOW, _UPDATE_OVERFLOW):
        n_messages += len(workers)
    size = _message_nbytes(compressor, params.dtype, n_values)
    record.n_messages += n_messages
    record.bytes_sent += n_messages * size + 2 * n_scaled
    record.float64_bytes += n_messages * 8 * n_values
    if status == _GRADIENT_OVERFLOW:
        raise DivergenceError("the gradient overflowed")
    if status == _NORM_BEYOND_FLOAT32:
        raise DivergenceError(
            f"a bucket norm {value:.3g} of a float32 vector exceeds the float32 "
            f"range ({float(np.finfo(np.float32).max):.3g})"
        )
    if status == _DECODED_OVERFLOW:
        raise MessageError(
            f"QSGD message decodes to values beyond the {params.dtype} range"
        )
    if status == _UPDATE_OVERFLOW:
        raise DivergenceError(update.divergence_reason())
