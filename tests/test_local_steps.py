"""Local steps (``local_steps=H``, Local SGD): each worker takes H steps on its
own shard between exchanges, and the agreed model moves by the aggregate of
the workers' model changes (docs/user_guide.rst, "Local steps").

The MPI cases (2 and 4 ranks) are in ``tests/mpi/check_local_steps.py``, run by
``tests/test_mpi.py``.
"""

import joblib
import numpy as np
import pytest
from test_checkpoint import assert_same_fit, interrupt_then_resume, interrupting
from test_gradient import naive_gradient

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._step_size import auto_learning_rate


def data(n_samples=240, n_features=5, noise=0.1, seed=0):
    return make_relu_regression(
        n_samples=n_samples, n_features=n_features, noise=noise, random_state=seed
    )


def naive_local_sgd(X, y, w0, *, learning_rate, local_steps, n_workers, batch_size,
                    rounds, entropy, momentum=0.0, memories=None):
    """Local SGD as docs/user_guide.rst defines it, in plain loops: each worker
    draws its share of the batch from its contiguous shard with its own stream
    and steps along its batch's mean gradient; the agreed model moves by the
    sum of the workers' changes weighted by their shard's share of the rows.

    With ``momentum`` (docs/robust.rst, "Worker momentum") each worker sends
    ``m = momentum m + (1 - momentum) v`` of its vectors ``v``, from ``m = v``
    (or from ``memories``, which is updated in place). Returns the model."""
    n = X.shape[0]
    base, extra = divmod(n, n_workers)
    shards, start = [], 0
    for index in range(n_workers):
        stop = start + base + (index < extra)
        shards.append((start, stop))
        start = stop
    streams = [
        np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index,)))
        for index in range(n_workers)
    ]
    shares = [
        batch_size // n_workers + (index < batch_size % n_workers)
        for index in range(n_workers)
    ]
    w = np.array(w0, dtype=np.float64)
    memories = [None] * n_workers if memories is None else memories
    for _ in range(rounds):
        direction = np.zeros_like(w)
        for index, ((lo, hi), stream, share) in enumerate(zip(shards, streams, shares)):
            local = w.copy()
            for _ in range(local_steps):
                rows = stream.integers(0, hi - lo, size=share)
                gradient = naive_gradient(X[lo:hi], y[lo:hi], None, local, rows, 1.0 / share)[0]
                local = local - learning_rate * gradient
            if local_steps == 1:
                # SGD's message: the batch's gradient, scaled to sum to the mean.
                vector = (hi - lo) / n * gradient
            else:
                vector = (hi - lo) / n * (w - local) / learning_rate
            if momentum:
                previous = memories[index]
                memories[index] = vector if previous is None else (
                    momentum * previous + (1 - momentum) * vector
                )
                vector = memories[index]
            direction += vector
        w = w - learning_rate * direction
    return w


@pytest.mark.parametrize("local_steps", [1, 2, 5])
def test_local_steps_match_a_naive_reference(local_steps):
    X, y = data()
    w0 = np.full(X.shape[1], 0.1)
    est = ReLURegressor(
        local_steps=local_steps, n_workers=3, batch_size=30, learning_rate=0.05,
        init=w0, fit_intercept=False, max_iter=3, tol=None, random_state=7,
    ).fit(X, y)
    rounds_per_epoch = -(-(240 // 30) // local_steps)
    assert est.comm_record_.n_rounds == 3 * rounds_per_epoch
    assert est.t_ == est.comm_record_.n_rounds * local_steps
    # The fit's first draw seeds the run's worker streams (no other draw here:
    # numeric learning rate, given init, no validation split).
    entropy = np.random.RandomState(7).randint(np.iinfo(np.int32).max)
    reference = naive_local_sgd(
        X, y, w0, learning_rate=0.05, local_steps=local_steps, n_workers=3,
        batch_size=30, rounds=est.comm_record_.n_rounds, entropy=entropy,
    )
    # Sums in another order: rounding, far below the steps' size.
    np.testing.assert_allclose(est.coef_, reference, rtol=1e-10, atol=1e-12)


def test_the_rounds_are_counted_and_only_rounds_send():
    X, y = data()
    one = ReLURegressor(n_workers=4, batch_size=40, max_iter=4, tol=None,
                        random_state=0).fit(X, y)
    four = ReLURegressor(n_workers=4, batch_size=40, local_steps=4, max_iter=4, tol=None,
                         random_state=0).fit(X, y)
    assert one.t_ == one.comm_record_.n_rounds == 4 * 6
    # 6 steps an epoch round up to 2 rounds of 4 local steps.
    assert four.comm_record_.n_rounds == 4 * 2 and four.t_ == 4 * 8
    assert four.steps_curve_ == [8, 16, 24, 32]
    assert four.comm_record_.n_messages == 4 * four.comm_record_.n_rounds
    assert four.comm_record_.bytes_sent == (
        one.comm_record_.bytes_sent // one.comm_record_.n_rounds * four.comm_record_.n_rounds
    )


def test_callback_sees_every_round():
    X, y = data()
    seen = []
    est = ReLURegressor(n_workers=2, batch_size=40, local_steps=3, max_iter=2, tol=None,
                        random_state=0, callback=lambda info: seen.append(info.step))
    est.fit(X, y)
    assert seen == list(range(0, est.t_ + 1, 3))


@pytest.mark.parametrize("solver", ["sgd", "qsgd", "intsgd"])
def test_local_steps_reach_the_planted_model(solver):
    X, y, w = make_relu_regression(n_samples=4000, n_features=20, coef=True, random_state=1)
    est = ReLURegressor(solver=solver, n_workers=4, local_steps=4, fit_intercept=False,
                        random_state=0, max_iter=60).fit(X, y)
    assert np.linalg.norm(est.coef_ - w) <= 1e-6 * np.linalg.norm(w)


def test_auto_step_plans_for_one_workers_share_of_the_batch():
    X, y = data(n_samples=800, n_features=10)
    local = ReLURegressor(n_workers=4, batch_size=80, local_steps=2, max_iter=1,
                          random_state=0).fit(X, y)
    share = ReLURegressor(n_workers=4, batch_size=20, max_iter=1, random_state=0).fit(X, y)
    assert local.learning_rate_ == share.learning_rate_
    assert local.learning_rate_ == auto_learning_rate(local._curvature, 20)


@pytest.mark.parametrize("params", [
    dict(solver="qsgd", bits=4),
    dict(solver="intsgd"),
    dict(solver="topk", k=2, error_feedback=True),
    dict(aggregation="geometric_median", n_byzantine=1),
    dict(aggregation="nnm+krum", n_byzantine=1, attack="alie"),
])
@pytest.mark.parametrize("joblib_backend", ["threading", "loky"])
def test_joblib_matches_inprocess_bit_for_bit(params, joblib_backend):
    X, y = data()
    assert_joblib_matches_inprocess(X, y, joblib_backend, n_workers=5, batch_size=50,
                                    local_steps=3, max_iter=4, tol=None, random_state=0,
                                    **params)


def assert_joblib_matches_inprocess(X, y, joblib_backend, **params):
    """The fit of ``params`` on joblib's ``joblib_backend`` is the in-process one."""
    reference = ReLURegressor(**params).fit(X, y)
    with joblib.parallel_config(backend=joblib_backend, n_jobs=2):
        est = ReLURegressor(backend="joblib", **params).fit(X, y)
    assert_same_fit(est, reference)


@pytest.mark.parametrize("solver", ["sgd", "qsgd", "intsgd", "topk-error-feedback"])
def test_an_interrupted_local_steps_fit_resumes_bit_identically(solver, tmp_path):
    X, y = data(n_samples=600, n_features=8)
    common = dict(batch_size=60, n_workers=3, random_state=0, max_iter=12, local_steps=4,
                  tol=None)
    path = tmp_path / "fit.ckpt"
    # 10 steps an epoch: 3 rounds of 4 local steps; a worker fails in its
    # 20th message, in the 7th epoch.
    resumed, left = interrupt_then_resume(path, X, y, solver, 20, 2, **common)
    reference = ReLURegressor(solver=interrupting(solver, None), **common).fit(X, y)
    assert left["epoch"] == 6 and left["t"] == 6 * 12
    assert_same_fit(resumed, reference)
    assert resumed.comm_record_.n_rounds == reference.comm_record_.n_rounds == 12 * 3


def test_partial_fit_and_warm_start_continue_the_local_steps():
    X, y = data()
    common = dict(n_workers=3, batch_size=30, local_steps=2, random_state=0,
                  learning_rate=0.05)
    est = ReLURegressor(**common)
    for _ in range(3):
        est.partial_fit(X, y)
    assert est.t_ == 3 * 8 and est.comm_record_.n_rounds == 4
    assert np.isfinite(est.coef_).all()


@pytest.mark.parametrize("params", [
    dict(solver="signsgd"), dict(solver="signum"),
    dict(solver="signsgd", aggregation="majority"),
])
def test_sign_directions_refuse_local_steps(params):
    X, y = data()
    with pytest.raises(ValueError, match="local_steps=2 takes gradient steps on each worker"):
        ReLURegressor(local_steps=2, n_workers=2, **params).fit(X, y)


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", None])
def test_bad_local_steps_are_named(value):
    X, y = data()
    with pytest.raises((ValueError, TypeError), match="local_steps"):
        ReLURegressor(local_steps=value).fit(X, y)


@pytest.mark.parametrize("params", [
    dict(), dict(solver="qsgd", bits=4), dict(solver="intsgd", n_workers=3),
    dict(aggregation="geometric_median", n_byzantine=1, n_workers=4),
])
def test_one_local_step_is_todays_fit_bit_for_bit(params):
    # local_steps=1 (and average=False, worker_momentum=0) adds no call to the
    # workers and keeps the compiled loop: the model is the default's, which
    # the step-by-step path (a callback turns the compiled loop off) equals.
    X, y = data()
    common = dict(max_iter=5, tol=None, random_state=0, **params)
    default = ReLURegressor(**common).fit(X, y)
    explicit = ReLURegressor(local_steps=1, average=False, worker_momentum=0.0,
                             **common).fit(X, y)
    step_by_step = ReLURegressor(local_steps=1, callback=lambda info: False,
                                 **common).fit(X, y)
    for est in (explicit, step_by_step):
        np.testing.assert_array_equal(est.coef_, default.coef_)
        assert est.intercept_ == default.intercept_
        assert est.loss_curve_ == default.loss_curve_
        assert est.comm_record_.bytes_sent == default.comm_record_.bytes_sent
