"""ReLURegressor(callback=...): called at the start of each run and after every
step, it may stop the fit at that step, whose parameters are then the model."""

import math
import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone

from sklearn_relu import ReLURegressor, StepInfo, _steps, make_relu_regression
from sklearn_relu._estimator import _shared_parameters

N_SAMPLES, BATCH = 300, 40
STEPS_PER_EPOCH = math.ceil(N_SAMPLES / BATCH)  # 8


@pytest.fixture(scope="module")
def data():
    X, y, w = make_relu_regression(
        n_samples=N_SAMPLES, n_features=6, coef=True, random_state=0
    )
    return X, y, w


def small(**params):
    kw = dict(batch_size=BATCH, max_iter=3, tol=None, random_state=0)
    return ReLURegressor(**{**kw, **params})


class Recorder:
    """Keeps every StepInfo (with a copy of its parameters); stops at ``stop_at``
    = (run, step)."""

    def __init__(self, stop_at=None):
        self.infos, self.stop_at = [], stop_at

    def __call__(self, info):
        self.infos.append(info)
        return (info.run, info.step) == self.stop_at

    def params_at(self, run, step):
        (info,) = [i for i in self.infos if (i.run, i.step) == (run, step)]
        return np.array(info.params)


def model(est):
    return np.append(est.coef_, est.intercept_)


def test_the_callback_sees_the_start_and_every_step_in_order(data):
    X, y, _ = data
    recorder = Recorder()
    est = small(n_ensemble=2, callback=recorder).fit(X, y)
    n_steps = 3 * STEPS_PER_EPOCH
    expected = [
        (run, step, math.ceil(step / STEPS_PER_EPOCH))
        for run in range(2) for step in range(n_steps + 1)
    ]
    assert [(i.run, i.step, i.epoch) for i in recorder.infos] == expected
    assert est.t_ == n_steps and not est.stopped_by_callback_
    # The messages as comm_record_ counts them (over the fit's runs): one a
    # step here, all of one size.
    assert [i.n_messages for i in recorder.infos] == [
        run * n_steps + step for run in range(2) for step in range(n_steps + 1)
    ]
    assert recorder.infos[-1].bytes_sent == est.comm_record_.bytes_sent
    assert recorder.infos[n_steps].bytes_sent * 2 == est.comm_record_.bytes_sent
    assert all(isinstance(i, StepInfo) for i in recorder.infos)


def test_the_params_are_read_only_and_each_steps_own(data):
    X, y, _ = data
    recorder = Recorder()
    small(max_iter=1, callback=recorder).fit(X, y)
    params = recorder.infos[-1].params
    with pytest.raises(ValueError, match="read-only"):
        params[0] = 1.0
    assert not np.array_equal(recorder.infos[1].params, recorder.infos[2].params)


def test_without_a_callback_the_model_is_the_same_bits_and_steps_are_compiled(
    data, monkeypatch
):
    X, y, _ = data
    calls = []
    compiled = _steps.run_steps

    def counting(backend, params, update, n_steps):
        calls.append(n_steps)
        return compiled(backend, params, update, n_steps)

    monkeypatch.setattr(_steps, "run_steps", counting)
    plain = small(solver="qsgd", bits=4, n_workers=2).fit(X, y)
    assert sum(calls) == plain.t_  # callback=None: the compiled loop, as before
    calls.clear()
    watched = small(solver="qsgd", bits=4, n_workers=2, callback=lambda info: False)
    watched.fit(X, y)
    assert calls == []  # with a callback every step is taken in Python
    np.testing.assert_array_equal(model(watched), model(plain))
    assert watched.loss_curve_ == plain.loss_curve_
    assert watched.comm_record_.bytes_sent == plain.comm_record_.bytes_sent


@pytest.mark.parametrize("stop_at", [1, 13, 16])  # first step, mid-epoch, epoch end
def test_returning_true_stops_at_that_step_with_its_parameters(data, stop_at):
    X, y, _ = data
    recorder = Recorder(stop_at=(0, stop_at))
    # A stopping rule that would otherwise keep a window mean of the parameters.
    est = small(max_iter=50, tol=1e-1, n_iter_no_change=1, callback=recorder)
    est.fit(X, y)
    assert recorder.infos[-1].step == stop_at
    np.testing.assert_array_equal(model(est), recorder.params_at(0, stop_at))
    assert est.stopped_by_callback_
    assert est.t_ == stop_at
    assert est.n_iter_ == math.ceil(stop_at / STEPS_PER_EPOCH) == len(est.loss_curve_)
    assert est.comm_record_.n_messages == stop_at


def test_a_stop_in_one_run_of_an_ensemble_ends_the_fit_with_that_model(data):
    X, y, _ = data
    recorder = Recorder(stop_at=(1, 5))
    est = small(n_ensemble=3, callback=recorder).fit(X, y)
    assert recorder.infos[-1].run == 1  # run 2 never started
    assert est.ensemble_coef_.shape == (2, X.shape[1])
    np.testing.assert_array_equal(model(est), recorder.params_at(1, 5))
    assert (est.t_, est.n_iter_) == (5, 1)


def test_a_stop_at_the_start_keeps_the_initial_point(data):
    X, y, _ = data
    recorder = Recorder(stop_at=(0, 0))
    est = small(callback=recorder).fit(X, y)
    assert len(recorder.infos) == 1
    np.testing.assert_array_equal(model(est), recorder.params_at(0, 0))
    assert (est.t_, est.n_iter_, est.loss_curve_) == (0, 0, [])
    assert est.comm_record_.n_messages == 0


def test_a_stop_with_early_stopping_keeps_that_step_not_the_best(data):
    X, y, _ = data
    recorder = Recorder(stop_at=(0, 20))
    est = small(early_stopping=True, callback=recorder).fit(X, y)
    np.testing.assert_array_equal(model(est), recorder.params_at(0, 20))
    assert len(est.validation_scores_) == est.n_iter_ == len(est.loss_curve_)


def test_steps_count_on_through_warm_starts_and_partial_fit(data):
    X, y, _ = data
    recorder = Recorder()
    est = small(max_iter=1, warm_start=True, callback=recorder).fit(X, y)
    est.fit(X, y)
    est.partial_fit(X, y)
    steps = [i.step for i in recorder.infos]
    epochs = [i.epoch for i in recorder.infos]
    per = STEPS_PER_EPOCH
    assert steps == [*range(per + 1), *range(per, 2 * per + 1), *range(2 * per, 3 * per + 1)]
    assert epochs[-1] == est.n_iter_ == 3 and steps[-1] == est.t_


@pytest.mark.parametrize("joblib_backend", ["loky", "threading"])
def test_under_joblib_the_callback_sees_the_same_steps_and_stops_alike(
    data, joblib_backend
):
    X, y, _ = data
    params = dict(solver="qsgd", bits=4, n_workers=2)
    reference = Recorder(stop_at=(0, 11))
    expected = small(callback=reference, **params).fit(X, y)
    recorder = Recorder(stop_at=(0, 11))
    with joblib.parallel_config(backend=joblib_backend, n_jobs=2):
        est = small(backend="joblib", callback=recorder, **params).fit(X, y)
    assert [(i.step, i.epoch, i.n_messages, i.bytes_sent) for i in recorder.infos] == [
        (i.step, i.epoch, i.n_messages, i.bytes_sent) for i in reference.infos
    ]
    for ours, theirs in zip(recorder.infos, reference.infos):
        np.testing.assert_array_equal(ours.params, theirs.params)
    np.testing.assert_array_equal(model(est), model(expected))
    assert est.t_ == 11 and est.stopped_by_callback_


def test_an_error_in_the_callback_leaves_the_estimator_as_it_was(data):
    X, y, _ = data

    def failing(info):
        if info.step == 3:
            raise RuntimeError("from the callback")

    est = small(callback=failing)
    with pytest.raises(RuntimeError, match="from the callback"):
        est.fit(X, y)
    assert not hasattr(est, "coef_")


def stop_early(info):
    return info.step == 2


def test_the_callback_is_a_parameter_but_not_compared_or_fingerprinted(data):
    X, y, _ = data
    est = small(callback=stop_early)
    assert est.get_params()["callback"] is stop_early
    assert clone(est).callback is stop_early
    assert small().callback is None
    # MPI ranks compare these (and checkpoints hash them): each rank has its
    # own function object, which must not make them disagree.
    assert "callback" not in _shared_parameters(est, partial=False)
    with pytest.raises(ValueError, match="callback must be None or a callable"):
        small(callback="stop").fit(X, y)
    # A module-level callback pickles with the estimator, by reference.
    fitted = pickle.loads(pickle.dumps(est.fit(X, y)))
    assert fitted.t_ == 2 and fitted.callback is stop_early


def test_a_checkpointed_fit_with_a_callback_resumes_and_the_callback_continues(
    data, tmp_path
):
    X, y, _ = data
    path = tmp_path / "fit.ckpt"

    class Killed(Exception):
        pass

    def dies_in_epoch_3(info):
        if info.step == 2 * STEPS_PER_EPOCH + 1:
            raise Killed

    with pytest.raises(Killed):
        small(checkpoint=str(path), callback=dies_in_epoch_3).fit(X, y)
    recorder = Recorder()
    resumed = small(checkpoint=str(path), callback=recorder).fit(X, y)
    # Resumed after epoch 2: the callback goes on from step 17.
    assert [i.step for i in recorder.infos] == list(
        range(2 * STEPS_PER_EPOCH + 1, 3 * STEPS_PER_EPOCH + 1)
    )
    np.testing.assert_array_equal(model(resumed), model(small().fit(X, y)))
