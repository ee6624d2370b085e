"""Worker momentum (``worker_momentum=beta``): each worker sends the momentum of
its vectors (docs/robust.rst, "Worker momentum"), checked against a naive
reference, across backends, through checkpoints and continuing fits. The MPI
cases are in ``tests/mpi/check_local_steps.py``."""

import numpy as np
import pytest
from test_checkpoint import assert_same_fit, interrupt_then_resume, interrupting
from test_local_steps import assert_joblib_matches_inprocess, naive_local_sgd

from sklearn_relu import ReLURegressor, make_relu_regression


def data():
    return make_relu_regression(n_samples=240, n_features=5, noise=0.3, random_state=0)


def entropy_of(seed):
    # The fit's first draw seeds the run's worker streams (numeric learning
    # rate, given init, no validation split: no other draw comes first).
    return np.random.RandomState(seed).randint(np.iinfo(np.int32).max)


@pytest.mark.parametrize("local_steps", [1, 3])
def test_worker_momentum_matches_a_naive_reference(local_steps):
    X, y = data()
    w0 = np.full(X.shape[1], 0.1)
    est = ReLURegressor(
        worker_momentum=0.8, local_steps=local_steps, n_workers=3, batch_size=30,
        learning_rate=0.05, init=w0, fit_intercept=False, max_iter=3, tol=None,
        random_state=7,
    ).fit(X, y)
    reference = naive_local_sgd(
        X, y, w0, learning_rate=0.05, local_steps=local_steps, n_workers=3, batch_size=30,
        rounds=est.comm_record_.n_rounds, entropy=entropy_of(7), momentum=0.8,
    )
    np.testing.assert_allclose(est.coef_, reference, rtol=1e-10, atol=1e-12)


def test_partial_fit_continues_the_momentum():
    X, y = data()
    w0 = np.full(X.shape[1], 0.1)
    est = ReLURegressor(worker_momentum=0.9, n_workers=2, batch_size=20,
                        learning_rate=0.05, init=w0, fit_intercept=False, random_state=3)
    memories = [None, None]
    w = w0
    for _ in range(3):
        est.partial_fit(X, y)
        # Each call restarts the streams from the same seed (an int
        # random_state), and the momentum goes on.
        w = naive_local_sgd(X, y, w, learning_rate=0.05, local_steps=1, n_workers=2,
                            batch_size=20, rounds=12, entropy=entropy_of(3), momentum=0.9,
                            memories=memories)
    np.testing.assert_allclose(est.coef_, w, rtol=1e-10, atol=1e-12)


def test_zero_momentum_is_no_momentum():
    X, y = data()
    a = ReLURegressor(worker_momentum=0.0, max_iter=3, random_state=0).fit(X, y)
    b = ReLURegressor(max_iter=3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)


@pytest.mark.parametrize("params", [
    dict(aggregation="geometric_median", n_byzantine=1, attack="alie"),
    dict(aggregation="nnm+trimmed_mean", n_byzantine=1, solver="qsgd"),
    dict(solver="intsgd", local_steps=2),
])
@pytest.mark.parametrize("joblib_backend", ["threading", "loky"])
def test_joblib_matches_inprocess_bit_for_bit(params, joblib_backend):
    X, y = data()
    assert_joblib_matches_inprocess(X, y, joblib_backend, worker_momentum=0.9, n_workers=5,
                                    batch_size=50, max_iter=4, tol=None, random_state=0,
                                    **params)


@pytest.mark.parametrize("solver", ["sgd", "intsgd"])
def test_an_interrupted_fit_with_momentum_resumes_bit_identically(solver, tmp_path):
    X, y = make_relu_regression(n_samples=600, n_features=8, noise=0.1, random_state=0)
    common = dict(batch_size=60, n_workers=3, random_state=0, max_iter=12, tol=None,
                  worker_momentum=0.9, n_ensemble=2)
    resumed, left = interrupt_then_resume(tmp_path / "fit.ckpt", X, y, solver, 200, 2,
                                          **common)
    reference = ReLURegressor(solver=interrupting(solver, None), **common).fit(X, y)
    assert left["momentum_states"].shape == (3, 9)
    assert_same_fit(resumed, reference)


@pytest.mark.parametrize("value", [-0.1, 1.0, "0.5", None])
def test_bad_worker_momentum_is_named(value):
    X, y = data()
    with pytest.raises((ValueError, TypeError), match="worker_momentum"):
        ReLURegressor(worker_momentum=value).fit(X, y)
