"""The backends: joblib (loky, threading, Dask) against the in-process reference,
the registry, what is counted, faults, and messages off the wire.

MPI runs under ``mpiexec`` in ``test_mpi.py``.
"""

import os
import signal
import sys

import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from sklearn.model_selection import GridSearchCV

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.backends import (
    InProcessBackend,
    JoblibBackend,
    available_backends,
    get_backend,
)
from sklearn_relu.backends._joblib import WorkerError
from sklearn_relu.compression import QSGD, Identity, MessageError

try:
    import cloudpickle
except ImportError:  # joblib before 1.6 vendors it
    from joblib.externals import cloudpickle

# Fault-injecting compressors below must reach loky's worker processes, which
# cannot import this test module: ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_data(n_samples=240, n_features=8, seed=0):
    X, y = make_relu_regression(
        n_samples=n_samples, n_features=n_features, noise=0.1, random_state=seed
    )
    return X, y


def relu(backend, **params):
    defaults = dict(n_workers=3, batch_size=30, max_iter=4, tol=None, random_state=0)
    return ReLURegressor(backend=backend, **{**defaults, **params})


def assert_same_fit(est, reference):
    assert_array_equal(est.coef_, reference.coef_)
    assert est.intercept_ == reference.intercept_
    assert est.t_ == reference.t_
    assert est.loss_curve_ == reference.loss_curve_
    got, want = est.comm_record_, reference.comm_record_
    assert (got.n_messages, got.bytes_sent, got.float64_bytes) == (
        want.n_messages,
        want.bytes_sent,
        want.float64_bytes,
    )


# -- the registry --
def test_registry_lists_every_backend():
    assert {"inprocess", "joblib", "mpi"} <= set(available_backends())
    assert isinstance(get_backend("joblib"), JoblibBackend)
    backend = InProcessBackend()
    assert get_backend(backend) is backend
    with pytest.raises(ValueError, match="backend must be one of"):
        get_backend("spark")


def test_mpi_without_mpi4py_says_what_to_install(monkeypatch):
    # A None entry makes ``import mpi4py`` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    X, y = make_data()
    with pytest.raises(ImportError, match=r'pip install "sklearn-relu\[mpi\]"'):
        relu("mpi").fit(X, y)


# -- joblib gives the in-process model, bit for bit --
@pytest.mark.parametrize("joblib_backend", ["loky", "threading"])
@pytest.mark.parametrize("solver", ["sgd", "qsgd"])
def test_joblib_matches_inprocess_bit_for_bit(joblib_backend, solver):
    X, y = make_data()
    sample_weight = np.random.default_rng(0).uniform(0.5, 2, X.shape[0])
    params = dict(solver=solver, bits=4, bucket_size=5)
    reference = relu("inprocess", **params).fit(X, y, sample_weight)
    with joblib.parallel_config(backend=joblib_backend):
        est = relu("joblib", **params).fit(X, y, sample_weight)
    assert_same_fit(est, reference)
    # Beyond the messages, the model went out to every worker each step.
    assert est.comm_record_.control_bytes > est.t_ * 3 * 8 * (X.shape[1] + 1)


def test_joblib_ensemble_and_early_stopping_match_inprocess():
    X, y = make_data()
    params = dict(solver="qsgd", n_ensemble=3, early_stopping=True, max_iter=3)
    reference = relu("inprocess", **params).fit(X, y)
    with joblib.parallel_config(backend="loky"):
        est = relu("joblib", **params).fit(X, y)
    assert_same_fit(est, reference)
    assert_array_equal(est.ensemble_coef_, reference.ensemble_coef_)
    assert est.validation_scores_ == reference.validation_scores_


@pytest.mark.parametrize("processes", [False, True])
def test_joblib_on_a_dask_cluster_matches_inprocess(processes):
    distributed = pytest.importorskip("distributed")
    X, y = make_data()
    reference = relu("inprocess", solver="qsgd", n_workers=2).fit(X, y)
    with (
        distributed.LocalCluster(
            n_workers=2 if processes else 1,
            threads_per_worker=1 if processes else 2,
            processes=processes,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster),
        joblib.parallel_config(backend="dask"),
    ):
        est = relu("joblib", solver="qsgd", n_workers=2).fit(X, y)
    assert_same_fit(est, reference)


@pytest.mark.parametrize(
    "joblib_backend, n_workers", [("loky", 1), ("sequential", 2), ("sequential", 1)]
)
def test_joblib_when_tasks_cannot_run_side_by_side(joblib_backend, n_workers):
    # joblib would run the worker tasks one after another, and the first would
    # wait forever for the second: the workers run as threads instead.
    X, y = make_data()
    reference = relu("inprocess", n_workers=n_workers).fit(X, y)
    with joblib.parallel_config(backend=joblib_backend):
        est = relu(JoblibBackend(start_timeout=10), n_workers=n_workers).fit(X, y)
    assert_same_fit(est, reference)


def _occupy_a_thread():
    from distributed import Event

    Event("started").set()
    Event("release").wait(30)


def test_workers_that_cannot_all_start_end_the_fit_with_a_clear_error():
    # Two Dask threads, one busy: the second worker task would wait behind it.
    distributed = pytest.importorskip("distributed")
    X, y = make_data()
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        joblib.parallel_config(backend="dask"),
    ):
        started, release = distributed.Event("started"), distributed.Event("release")
        client.submit(_occupy_a_thread)
        started.wait(30)
        with pytest.raises(WorkerError, match="only 1 of 2 joblib workers started"):
            relu(JoblibBackend(start_timeout=1), n_workers=2).fit(X, y)
        release.set()


def test_joblib_inside_grid_search_workers():
    # Nested under GridSearchCV's own loky workers, joblib runs the fit's
    # workers as threads; the result is still the in-process one.
    X, y = make_data()
    grid = {"bits": [4, 8]}
    searches = [
        GridSearchCV(
            relu(backend, solver="qsgd", max_iter=2), grid, cv=2, n_jobs=2
        ).fit(X, y)
        for backend in ("inprocess", "joblib")
    ]
    assert_array_equal(
        searches[0].cv_results_["mean_test_score"],
        searches[1].cv_results_["mean_test_score"],
    )


def test_n_workers_none_takes_the_backends_count():
    X, y = make_data()
    assert relu("inprocess", n_workers=None).fit(X, y).n_workers_ == 1
    with joblib.parallel_config(backend="threading", n_jobs=3):
        assert relu("joblib", n_workers=None).fit(X, y).n_workers_ == 3
    with joblib.parallel_config(backend="threading"):
        expected = joblib.cpu_count()
        assert relu("joblib", n_workers=None).fit(X, y).n_workers_ == expected


def test_more_workers_than_samples_is_a_clear_error():
    X, y = make_data(n_samples=4)
    with pytest.raises(ValueError, match="larger than the number of training samples"):
        relu("joblib", n_workers=5, batch_size=5).fit(X, y)


def test_a_fitted_estimator_with_a_backend_instance_pickles():
    import pickle

    X, y = make_data()
    est = relu(JoblibBackend(), max_iter=1).fit(X, y)
    clone = pickle.loads(pickle.dumps(est))
    assert_array_equal(clone.predict(X), est.predict(X))


# -- accounting --
@pytest.mark.parametrize("backend", ["inprocess", "joblib"])
def test_bytes_counted_are_the_message_sizes(backend):
    X, y = make_data(n_features=30)
    n_params = 31
    with joblib.parallel_config(backend="threading"):
        est = relu(backend, solver="qsgd", bits=8).fit(X, y)
    record = est.comm_record_
    assert record.n_messages == est.t_ * 3
    # 12-byte header, one float32 norm, 31 coordinates at 8 bits.
    assert QSGD(bits=8).message_nbytes(n_params) == 12 + 4 + n_params
    assert record.bytes_sent == record.n_messages * (12 + 4 + n_params)
    assert record.float64_bytes == record.n_messages * 8 * n_params
    assert record.compute_seconds > 0 and record.communicate_seconds > 0


def test_qsgd_8_bits_sends_at_most_a_7_9th_of_sgd_at_d_4000():
    X, y = make_data(n_samples=40, n_features=4000)
    sent = {}
    for solver in ("sgd", "qsgd"):
        with joblib.parallel_config(backend="threading"):
            est = relu(
                "joblib",
                solver=solver,
                bits=8,
                n_workers=2,
                batch_size=10,
                max_iter=1,
                init="zeros",
                learning_rate=1e-3,
            ).fit(X, y)
        sent[solver] = est.comm_record_.bytes_sent
        assert est.comm_record_.n_messages == est.t_ * 2
    assert sent["qsgd"] <= sent["sgd"] / 7.9


# -- faults --
class FailingIdentity(Identity):
    """Raises in the ``fail_at``-th compress call of a worker."""

    def __init__(self, fail_at, kill=False):
        self.fail_at, self.kill, self.calls = fail_at, kill, 0

    def compress(self, vector, random_state=None):
        self.calls += 1
        if self.calls == self.fail_at:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected worker failure")
        return super().compress(vector, random_state)


class CountingIdentity(Identity):
    """Counts its compress calls as state, the way error feedback keeps memory."""

    stateful = True

    def __init__(self):
        self._calls = 0

    def reset(self):
        self._calls = 0

    def get_state(self):
        return np.array([self._calls], dtype=np.float64)

    def set_state(self, state):
        self._calls = int(state[0])

    def compress(self, vector, random_state=None):
        self._calls += 1
        return super().compress(vector, random_state)


@pytest.mark.parametrize("joblib_backend", [None, "threading", "loky"])
def test_each_worker_owns_its_compressor_state_on_every_backend(joblib_backend):
    # Three steps on two workers: each worker's own count is 3 (a compressor
    # shared by the workers would count 6), and the caller's is untouched.
    compressor = CountingIdentity()
    backend = InProcessBackend() if joblib_backend is None else JoblibBackend()
    with joblib.parallel_config(backend=joblib_backend or "loky"):
        params = start_backend(backend, compressor)
        try:
            for _ in range(3):
                params = backend.step(params, lambda p, g: p - 0.1 * g)
            assert backend.compressor_states().tolist() == [[3.0], [3.0]]
            backend.reseed(1)
            assert backend.compressor_states().tolist() == [[0.0], [0.0]]
            backend.restore_compressor_states(np.array([[5.0], [7.0]]))
            params = backend.step(params, lambda p, g: p - 0.1 * g)
            assert backend.compressor_states().tolist() == [[6.0], [8.0]]
        finally:
            backend.stop()
    assert compressor._calls == 0


def test_a_stateless_compressor_has_no_states_to_collect():
    backend = InProcessBackend()
    start_backend(backend, Identity())
    assert backend.compressor_states() is None


def start_backend(backend, compressor):
    X, y = make_data()
    backend.start(X, y, None, n_workers=2, batch_size=20, compressor=compressor)
    return np.zeros(X.shape[1] + 1)


def test_a_worker_that_raises_ends_the_fit_with_its_error():
    with joblib.parallel_config(backend="threading"):
        backend = JoblibBackend()
        # Each worker owns its copy of the compressor: its second call is the
        # second step.
        params = start_backend(backend, FailingIdentity(fail_at=2))
        try:
            backend.step(params, lambda p, g: p - 0.1 * g)
            with pytest.raises(WorkerError, match="injected worker failure"):
                backend.step(params, lambda p, g: p - 0.1 * g)
        finally:
            backend.stop()


def test_a_killed_worker_process_ends_the_fit_with_a_clear_error():
    with joblib.parallel_config(backend="loky"):
        backend = JoblibBackend()
        params = start_backend(backend, FailingIdentity(fail_at=2, kill=True))
        try:
            backend.step(params, lambda p, g: p - 0.1 * g)
            with pytest.raises(WorkerError, match="stopped answering"):
                backend.step(params, lambda p, g: p - 0.1 * g)
        finally:
            backend.stop()


# -- messages off the wire: rejected when malformed, never decoded into garbage --
# tests/test_compression.py fuzzes truncated messages, random bytes and header
# fields; these add what a transport can do to a valid message.
COMPRESSORS = [Identity(), QSGD(bits=2), QSGD(bits=8, bucket_size=3), QSGD(bits=13)]
vectors = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40).map(
    np.array
)


@settings(max_examples=60, deadline=None)
@given(
    vector=vectors,
    compressor=st.sampled_from(COMPRESSORS),
    extra=st.binary(min_size=1, max_size=9),
)
def test_messages_with_trailing_bytes_are_rejected(vector, compressor, extra):
    # Two messages run together, or a buffer longer than its message.
    message = compressor.compress(vector, random_state=0)
    with pytest.raises(MessageError):
        compressor.decompress(message + extra)
    with pytest.raises(MessageError):
        compressor.decompress(message + message)


@settings(max_examples=200, deadline=None)
@given(vector=vectors, compressor=st.sampled_from(COMPRESSORS), data=st.data())
def test_corrupted_messages_raise_message_error_or_decode_to_a_finite_vector(
    vector, compressor, data
):
    message = bytearray(compressor.compress(vector, random_state=0))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(message) - 1))
        message[position] = data.draw(st.integers(0, 255))
    try:
        decoded = compressor.decompress(bytes(message))
    except MessageError:
        return
    # What passes the checks is a vector of the declared kind: finite, of the
    # length the header states and the body holds. (Flipped bits inside the
    # body decode to another valid vector: TCP and MPI guard the bytes in
    # transit; the decoder guards the structure.)
    assert decoded.ndim == 1 and np.all(np.isfinite(decoded))
    declared = int.from_bytes(message[4:8], "little")  # the header's length field
    assert decoded.shape == (declared,)


@pytest.mark.parametrize("continue_by", ["partial_fit", "warm_start"])
def test_compressor_state_is_what_a_continuing_fit_continues_from(continue_by):
    X, y = make_data()
    est = ReLURegressor(
        solver=CountingIdentity(), n_workers=2, batch_size=20, max_iter=2, tol=None,
        warm_start=continue_by == "warm_start", random_state=0,
    )
    for _ in range(2):
        getattr(est, "fit" if continue_by == "warm_start" else continue_by)(X, y)
    # Every worker compressed once a step, over both calls.
    assert est._compressor_states[2].tolist() == [[est.t_], [est.t_]]
    # Another solver or another number of workers starts afresh.
    steps_before = est.t_
    est.set_params(n_workers=1, warm_start=True).fit(X, y)
    assert est._compressor_states[2].tolist() == [[est.t_ - steps_before]]
