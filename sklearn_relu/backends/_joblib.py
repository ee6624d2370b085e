"""Workers on joblib: loky processes, threads, or a Dask cluster.

The driver (the process calling ``fit``) keeps one persistent
:class:`joblib.Parallel` for the whole fit and sends each step's parameters to
the workers; each worker answers with its compressed message. Whatever joblib
backend is active (``joblib.parallel_config``) runs the tasks.

joblib gives no affinity between a task and a process, so workers are kept in a
per-process cache keyed by ``(fit id, worker index)``: the shard travels once to
each process that runs that worker (loky memory-maps it, Dask scatters it) and
stays there. The small state that changes every step -- the worker's random
stream and loss sums, :meth:`ShardWorker.get_state` -- travels with every task
and comes back with the result, so any process can run any worker and the fit
is the same, bit for bit, as in-process.
"""

import threading
import time
import uuid
from collections import OrderedDict

import joblib

from .._worker import ShardWorker, shard_bounds
from ._base import Backend

__all__ = ["JoblibBackend"]

# Per process: (fit id, worker index) -> ShardWorker. Only the latest few fits
# are kept, so that a process that served a finished fit frees its shards.
_WORKERS = OrderedDict()
_WORKERS_LOCK = threading.Lock()
_FITS_KEPT = 2


class _Missing:
    """Returned by a task whose process does not hold the worker yet."""


def _remember(fit_id, index, worker):
    with _WORKERS_LOCK:
        _WORKERS[(fit_id, index)] = worker
        fits = list(OrderedDict.fromkeys(key[0] for key in _WORKERS))
        for old in fits[:-_FITS_KEPT]:
            for key in [key for key in _WORKERS if key[0] == old]:
                del _WORKERS[key]


def _forget(fit_id):
    with _WORKERS_LOCK:
        for key in [key for key in _WORKERS if key[0] == fit_id]:
            del _WORKERS[key]


def _run_task(fit_id, index, state, method, args, shard=None):
    """Run ``worker.method(*args)`` where the task landed; see the module docs.

    Returns ``(result, new_state, compute_seconds)``, or ``_Missing`` when this
    process has not seen the worker and no ``shard`` came with the task.
    """
    worker = _WORKERS.get((fit_id, index))
    if worker is None:
        if shard is None:
            return _Missing
        worker = ShardWorker(**shard)
        _remember(fit_id, index, worker)
    if state is not None:
        worker.set_state(state)
    start = time.perf_counter()
    result = getattr(worker, method)(*args)
    seconds = time.perf_counter() - start
    return result, worker.get_state(), seconds


class JoblibBackend(Backend):
    """Run the workers as joblib tasks, under the active ``parallel_config``.

    Parameters
    ----------
    n_jobs : int or None, default=None
        Concurrent tasks; ``None`` runs all workers of a step at once.

    Examples
    --------
    >>> import joblib
    >>> from sklearn_relu import ReLURegressor, make_relu_regression
    >>> X, y = make_relu_regression(n_samples=200, n_features=5, random_state=0)
    >>> with joblib.parallel_config(backend="threading"):
    ...     est = ReLURegressor(backend="joblib", n_workers=2, max_iter=3, tol=None,
    ...                         random_state=0).fit(X, y)
    >>> ref = ReLURegressor(n_workers=2, max_iter=3, tol=None, random_state=0).fit(X, y)
    >>> bool((est.coef_ == ref.coef_).all())
    True
    """

    name = "joblib"
    distributed = True

    def __init__(self, n_jobs=None):
        super().__init__()
        self.n_jobs = n_jobs
        self._parallel = None

    def resolve_n_workers(self, n_workers):
        if n_workers is None:
            return joblib.effective_n_jobs(self.n_jobs or -1)
        return n_workers

    def _start(self, X, y, sample_weight, *, n_workers, batch_size, compressor):
        self._fit_id = uuid.uuid4().hex
        self._shards = []
        for index in range(n_workers):
            start, stop = shard_bounds(X.shape[0], n_workers, index)
            self._shards.append(
                dict(
                    X=X[start:stop],
                    y=y[start:stop],
                    sample_weight=(
                        None if sample_weight is None else sample_weight[start:stop]
                    ),
                    index=index,
                    n_workers=n_workers,
                    n_samples=X.shape[0],
                    batch_size=batch_size,
                    compressor=compressor,
                )
            )
        self._states = [None] * n_workers
        # One pool for the whole fit: starting loky workers or Dask tasks anew
        # every step would cost far more than the step itself.
        self._parallel = joblib.Parallel(
            n_jobs=self.n_jobs or n_workers, batch_size=1, pre_dispatch="all"
        )
        self._parallel.__enter__()
        # Place every worker now, so that steps carry parameters only.
        self._run("get_state", (), with_shard=True)

    def _run(self, method, args, with_shard=False):
        """Run ``method`` on every worker; ``(results, slowest compute seconds)``.

        Tasks that land on a process without their worker are sent again with
        the shard.
        """
        indices = list(range(len(self._shards)))
        outputs = [None] * len(indices)
        while indices:
            answers = self._parallel(
                joblib.delayed(_run_task)(
                    self._fit_id, index, self._states[index], method, args,
                    self._shards[index] if with_shard else None,
                )
                for index in indices
            )
            missing = []
            for index, answer in zip(indices, answers):
                if answer is _Missing:
                    missing.append(index)
                else:
                    outputs[index] = answer
            indices, with_shard = missing, True
        results = [output[0] for output in outputs]
        self._states = [output[1] for output in outputs]
        return results, max(output[2] for output in outputs)

    def call(self, method, *args):
        results, _ = self._run(method, args)
        self._count_control(args, results)
        return results

    def _count_control(self, args, results):
        """Exact traffic besides the messages: arguments out, results back."""
        sent = sum(getattr(arg, "nbytes", 0) for arg in args) * len(self._shards)
        self.record.control_bytes += sent + sum(
            getattr(result, "nbytes", 0) for result in results
        )

    def step(self, params, update):
        start = time.perf_counter()
        messages, compute = self._run("gradient_message", (params,))
        self.record.add_messages(messages, params.shape[0])
        self._count_control((params,), ())
        gradient = self.compressor.decompress(messages[0])
        for message in messages[1:]:
            gradient += self.compressor.decompress(message)
        # Workers compute side by side: the step's compute time is the slowest
        # worker's; everything else (dispatch, transfer, decoding) is
        # communication.
        self.record.compute_seconds += compute
        self.record.communicate_seconds += time.perf_counter() - start - compute
        return update(params, gradient)

    def stop(self):
        if self._parallel is not None:
            parallel, self._parallel = self._parallel, None
            parallel.__exit__(None, None, None)
            # Threads share this process's cache; free it now.
            _forget(self._fit_id)
        self._shards = []
