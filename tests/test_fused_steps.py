"""The compiled loop of many steps (sklearn_relu._steps) gives the model of the
step-by-step path, bit for bit, and is used where it says it is."""

import multiprocessing
import os

import numpy as np
import pytest
from joblib import parallel_config

from sklearn_relu import ReLURegressor, _gradient, _parallel, _steps, make_relu_regression
from sklearn_relu._schedule import ConstantStep
from sklearn_relu._worker import ShardWorker
from sklearn_relu.backends import InProcessBackend
from sklearn_relu.compression import QSGD, Identity

pytestmark = pytest.mark.skipif(
    _gradient.KERNEL != "c", reason="the C kernel (sklearn_relu._kernels) is not built"
)

SOLVERS = [
    pytest.param(dict(solver="sgd"), id="sgd"),
    pytest.param(dict(solver="qsgd", bits=8), id="qsgd8"),
    pytest.param(dict(solver="qsgd", bits=3, bucket_size=7), id="qsgd3-bucket7"),
]


def _data(dtype=np.float64, n=900, d=13, weighted=False, seed=1):
    X, y = make_relu_regression(n_samples=n, n_features=d, noise=0.05, random_state=seed)
    sample_weight = np.random.default_rng(seed).random(n) if weighted else None
    return X.astype(dtype), y.astype(dtype), sample_weight


def _backend(fused):
    backend = InProcessBackend()
    backend._fused_steps = fused
    return backend


def _assert_same_fit(fast, reference):
    np.testing.assert_array_equal(fast.coef_, reference.coef_)
    assert fast.coef_.dtype == reference.coef_.dtype
    assert fast.intercept_ == reference.intercept_
    assert fast.loss_curve_ == reference.loss_curve_
    assert (fast.n_iter_, fast.t_) == (reference.n_iter_, reference.t_)
    got, want = fast.comm_record_, reference.comm_record_
    assert (got.n_messages, got.bytes_sent, got.float64_bytes) == (
        want.n_messages, want.bytes_sent, want.float64_bytes
    )


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_workers", [1, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_compiled_steps_give_the_step_by_step_model(
    fused_calls, solver, dtype, weighted, n_workers, fit_intercept
):
    X, y, sample_weight = _data(dtype, weighted=weighted)
    params = dict(n_workers=n_workers, fit_intercept=fit_intercept, batch_size=30,
                  max_iter=4, tol=None, random_state=5, **solver)
    fast = ReLURegressor(backend=_backend(True), **params).fit(X, y, sample_weight)
    assert sum(fused_calls) == fast.t_  # every step ran in the compiled loop
    reference = ReLURegressor(backend=_backend(False), **params).fit(
        X, y, sample_weight
    )
    assert sum(fused_calls) == fast.t_  # and none of the reference's
    _assert_same_fit(fast, reference)


@pytest.mark.parametrize("solver", SOLVERS)
def test_compiled_steps_give_the_joblib_model(solver):
    # joblib's workers run the step-by-step path; tests/mpi/check_equivalence.py
    # holds the MPI backend to the in-process model (compiled loop) the same way.
    X, y, _ = _data()
    params = dict(n_workers=2, batch_size=40, max_iter=3, tol=None, random_state=2,
                  **solver)
    fast = ReLURegressor(backend=_backend(True), **params).fit(X, y)
    with parallel_config(backend="threading", n_jobs=2):
        other = ReLURegressor(backend="joblib", **params).fit(X, y)
    _assert_same_fit(fast, other)


@pytest.mark.parametrize("solver", SOLVERS)
def test_stopping_rule_warm_start_and_partial_fit_see_the_same_steps(solver):
    X, y, _ = _data(n=600)

    def runs(fused):
        est = ReLURegressor(backend=_backend(fused), warm_start=True, random_state=0,
                            max_iter=30, **solver)
        first = est.fit(X, y)  # the default stopping rule decides the epochs
        coef = first.coef_.copy()
        est.set_params(max_iter=2, tol=None).fit(X, y)
        est.partial_fit(X[:200], y[:200])
        early = ReLURegressor(backend=_backend(fused), early_stopping=True,
                              random_state=1, max_iter=20, **solver).fit(X, y)
        return coef, est, early

    coef_fast, fast, early_fast = runs(True)
    coef_ref, reference, early_ref = runs(False)
    np.testing.assert_array_equal(coef_fast, coef_ref)
    _assert_same_fit(fast, reference)
    _assert_same_fit(early_fast, early_ref)
    assert early_fast.validation_scores_ == early_ref.validation_scores_


def _started(compressor, X, y, sample_weight=None, n_workers=2, batch_size=20):
    backends = []
    for fused in (True, False):
        backend = _backend(fused)
        backend.start(X, y, sample_weight, n_workers=n_workers, batch_size=batch_size,
                      compressor=compressor)
        backend.reseed(7)
        backends.append(backend)
    return backends


@pytest.mark.parametrize(
    "compressor", [Identity(), QSGD(8), QSGD(2, bucket_size=5)], ids=repr
)
def test_the_loop_leaves_the_generators_where_the_steps_would(compressor):
    # The next step after the loop, in Python, draws what it would have drawn.
    X, y, sample_weight = _data(weighted=True)
    fast, reference = _started(compressor, X, y, sample_weight)
    start = np.full(X.shape[1] + 1, 0.1)
    update_fast = _steps.SGDUpdate(ConstantStep(0.05))
    update_ref = _steps.SGDUpdate(ConstantStep(0.05))
    assert _steps.fusable(fast, start, update_fast)
    got = fast.run_steps(start, update_fast, 25)
    want = reference.run_steps(start, update_ref, 25)
    np.testing.assert_array_equal(got, want)
    for a, b in zip(fast.workers, reference.workers):
        assert a.bit_generator.state == b.bit_generator.state
    np.testing.assert_array_equal(
        fast.reduce(ShardWorker.batch_loss), reference.reduce(ShardWorker.batch_loss)
    )
    np.testing.assert_array_equal(fast.step(got, update_fast),
                                  reference.step(want, update_ref))


def test_norms_outside_float32_travel_with_an_exponent_in_the_loop_too():
    # Gradients near 1e-45 have norms below float32's normal range: the
    # message carries a power-of-two exponent (2 bytes more).
    X, y, _ = _data(n=300, d=6)
    X, y = X * 1e-22, y * 1e-22
    fast, reference = _started(QSGD(4), X, y)
    start = np.zeros(X.shape[1])  # no intercept: its gradient is near 1e-23
    got = fast.run_steps(start, _steps.SGDUpdate(ConstantStep(0.5)), 10)
    want = reference.run_steps(start, _steps.SGDUpdate(ConstantStep(0.5)), 10)
    np.testing.assert_array_equal(got, want)
    assert fast.record.bytes_sent == reference.record.bytes_sent
    assert fast.record.bytes_sent == 20 * (QSGD(4).message_nbytes(6) + 2)


@pytest.mark.parametrize("learning_rate", [1e6, 1e200])
@pytest.mark.parametrize("solver", SOLVERS)
def test_a_diverging_step_raises_what_the_step_by_step_path_raises(
    learning_rate, solver
):
    X, y, _ = _data()
    messages = []
    for fused in (True, False):
        est = ReLURegressor(backend=_backend(fused), learning_rate=learning_rate,
                            random_state=0, **solver)
        with pytest.raises(FloatingPointError, match="SGD diverged") as error:
            with np.errstate(over="ignore", invalid="ignore"):
                est.fit(X, y)
        assert not hasattr(est, "coef_")
        messages.append(str(error.value))
    assert messages[0] == messages[1]


def test_a_subclass_that_watches_each_step_gets_every_step():
    class Watching(InProcessBackend):
        def step(self, params, update):
            self.seen = getattr(self, "seen", 0) + 1
            return super().step(params, update)

    X, y, _ = _data()
    backend = Watching()
    est = ReLURegressor(backend=backend, max_iter=2, tol=None, random_state=0).fit(X, y)
    assert backend.seen == est.t_


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="qsgd", encoding="elias"),
        dict(solver="signsgd"),
        dict(solver="topk", error_feedback=True),
        dict(aggregation="majority", solver="signsgd"),
    ],
    ids=["elias", "signsgd", "topk-ef", "majority"],
)
def test_other_compressors_and_aggregators_take_the_step_by_step_path(
    fused_calls, params
):
    X, y, _ = _data()
    ReLURegressor(max_iter=2, tol=None, random_state=0, **params).fit(X, y)
    assert fused_calls == []


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_large_batches_split_between_two_threads_give_the_same_bits(
    fused_calls, monkeypatch, solver, n_threads
):
    # Every batch counts as large: the loop's helper thread computes the
    # second half of each, as the per-step path's pooled thread does.
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "N_THREADS", n_threads)
    X, y, sample_weight = _data(weighted=True)
    params = dict(n_workers=2, batch_size=50, max_iter=3, tol=None, random_state=0,
                  **solver)
    fast = ReLURegressor(backend=_backend(True), **params).fit(X, y, sample_weight)
    assert sum(fused_calls) == fast.t_
    reference = ReLURegressor(backend=_backend(False), **params).fit(
        X, y, sample_weight
    )
    _assert_same_fit(fast, reference)


def test_an_epoch_longer_than_one_call_continues_across_calls(monkeypatch):
    monkeypatch.setattr(_steps, "MAX_STEPS_PER_CALL", 7)
    calls = []
    run_call = _steps._run_call

    def counting(backend, params, update, n_steps):
        calls.append(n_steps)
        return run_call(backend, params, update, n_steps)

    monkeypatch.setattr(_steps, "_run_call", counting)
    X, y, _ = _data()
    params = dict(solver="qsgd", batch_size=40, max_iter=2, tol=None, random_state=0)
    fast = ReLURegressor(backend=_backend(True), **params).fit(X, y)
    assert calls == [7, 7, 7, 2] * 2  # 23 steps an epoch
    reference = ReLURegressor(backend=_backend(False), **params).fit(X, y)
    _assert_same_fit(fast, reference)


@pytest.mark.parametrize("d, bucket_size", [(7, None), (129, None), (300, None),
                                            (1000, 512), (130, 129)])
def test_qsgd_norms_of_long_buckets_add_up_as_numpy_does(d, bucket_size):
    # NumPy sums a bucket's squares pairwise (blocks of 128, eight accumulators);
    # the loop must round the same way for buckets of every length.
    X, y, _ = _data(n=400, d=d)
    params = dict(solver="qsgd", bits=5, bucket_size=bucket_size, batch_size=50,
                  max_iter=2, tol=None, random_state=0)
    fast = ReLURegressor(backend=_backend(True), **params).fit(X, y)
    reference = ReLURegressor(backend=_backend(False), **params).fit(X, y)
    _assert_same_fit(fast, reference)


def _fit_in_child(queue):
    X, y, _ = _data()
    est = ReLURegressor(backend=_backend(True), batch_size=50, max_iter=2, tol=None,
                        random_state=0).fit(X, y)
    queue.put(est.coef_)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_helper_thread(monkeypatch):
    # The parent's helper thread does not exist in a forked child: the child
    # must start its own rather than wait for it forever.
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "N_THREADS", 2)
    X, y, _ = _data()
    parent = ReLURegressor(backend=_backend(True), batch_size=50, max_iter=2, tol=None,
                           random_state=0).fit(X, y)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_fit_in_child, args=(queue,))
    child.start()
    coef = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(coef, parent.coef_)


def test_an_update_counts_its_steps_from_first_through_the_loop():
    # A halving schedule reads the step count: the loop must advance it.
    from sklearn_relu._schedule import HalvingStep

    update = _steps.SGDUpdate(HalvingStep(1.0, half_life=1), first=3)
    update.skip(2)
    np.testing.assert_array_equal(update(np.zeros(1), np.ones(1)), [-(2.0 ** -5)])
