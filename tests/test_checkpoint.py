"""Checkpoints: a fit interrupted and started again ends with the model, to the
last bit, of a fit that was never interrupted (issue 12). The MPI target (a rank
killed by SIGKILL under ``mpiexec -n 3``) is in ``test_mpi.py``."""

import errno
import importlib.metadata
import io
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time

import joblib
import numpy as np
import pytest

from sklearn_relu import DirichletShards, ReLURegressor, make_relu_regression
from sklearn_relu._checkpoint import _read, _write
from sklearn_relu._persist import atomic_write, load_model, save_model
from sklearn_relu.attacks import Scaled
from sklearn_relu.compression import QSGD, ErrorFeedback, Identity, IntSGD, Signum, TopK


class Interrupt:
    """A compressor that raises in its worker's ``_fail_at``-th message.

    Private attributes: not parameters, so the fit that resumes (with
    ``_fail_at`` None) has the same fingerprint as the one interrupted.
    """

    _fail_at = None
    _calls = 0

    def _tick(self):
        self._calls += 1
        if self._fail_at is not None and self._calls == self._fail_at:
            raise RuntimeError("injected interruption")

    def compress(self, vector, random_state=None):
        self._tick()
        return super().compress(vector, random_state)

    def encode(self, vector, scale, n_workers, random_state=None):
        self._tick()
        return super().encode(vector, scale, n_workers, random_state)


class InterruptIdentity(Interrupt, Identity):
    pass


class InterruptQSGD(Interrupt, QSGD):
    pass


class InterruptSignum(Interrupt, Signum):
    pass


class InterruptTopK(Interrupt, TopK):
    pass


class InterruptIntSGD(Interrupt, IntSGD):
    pass


SOLVERS = {
    "sgd": lambda: InterruptIdentity(),
    "qsgd": lambda: InterruptQSGD(bits=3, bucket_size=4),
    "signum": lambda: InterruptSignum(momentum=0.9),
    "topk-error-feedback": lambda: ErrorFeedback(InterruptTopK(k=3)),
    "intsgd": lambda: InterruptIntSGD(bits=16),
}


def interrupting(solver, fail_at):
    compressor = SOLVERS[solver]()
    inner = getattr(compressor, "compressor", compressor)
    inner._fail_at = fail_at
    return compressor


def make_data(n_samples=600, n_features=8, seed=0):
    return make_relu_regression(
        n_samples=n_samples, n_features=n_features, noise=0.1, random_state=seed
    )


COMMON = dict(batch_size=60, n_workers=3, random_state=0, max_iter=40)


def assert_same_fit(est, reference):
    np.testing.assert_array_equal(est.coef_, reference.coef_)
    assert est.intercept_ == reference.intercept_
    assert (est.n_iter_, est.t_) == (reference.n_iter_, reference.t_)
    assert est.loss_curve_ == reference.loss_curve_
    assert est.validation_scores_ == reference.validation_scores_
    np.testing.assert_array_equal(est.ensemble_coef_, reference.ensemble_coef_)
    assert est.comm_record_.n_messages == reference.comm_record_.n_messages
    assert est.comm_record_.bytes_sent == reference.comm_record_.bytes_sent


def interrupt_then_resume(path, X, y, solver, fail_at, every, caplog=None, **params):
    """Fit until a worker raises at its ``fail_at``-th message, then fit again
    with the same parameters; return the resumed estimator and the checkpoint
    the interruption left (with ``caplog``: and the last epoch the interrupted
    fit logged)."""
    first = ReLURegressor(
        solver=interrupting(solver, fail_at), checkpoint=path, checkpoint_every=every,
        verbose=caplog is not None, **params,
    )
    with pytest.raises(Exception, match="injected interruption"):
        if caplog is not None:
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="sklearn_relu"):
                first.fit(X, y)
        else:
            first.fit(X, y)
    left = _read(path)
    if caplog is not None:
        left["logged"] = max(
            int(r.getMessage().split("epoch ")[1].split(" ")[0]) for r in caplog.records
        )
    resumed = ReLURegressor(
        solver=interrupting(solver, None), checkpoint=path, checkpoint_every=every,
        **params,
    ).fit(X, y)
    return resumed, left


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_an_interrupted_fit_resumes_bit_identically(solver, tmp_path, caplog):
    X, y = make_data()
    reference = ReLURegressor(solver=interrupting(solver, None), **COMMON).fit(X, y)
    steps_per_epoch = 10
    # Interrupted mid-epoch, about two thirds through the reference fit.
    fail_at = (2 * reference.n_iter_ // 3) * steps_per_epoch + 4
    assert reference.n_iter_ >= 6
    path = tmp_path / "fit.ckpt"
    resumed, left = interrupt_then_resume(path, X, y, solver, fail_at, 2, caplog,
                                          **COMMON)
    assert_same_fit(resumed, reference)
    # The last checkpoint before the interruption (mid-epoch, after the epoch
    # last logged): at most one interval lost. (IntSGD encodes a step twice
    # when it redoes it, so its interruption may come earlier.)
    epochs_done = left["logged"]
    assert epochs_done <= (fail_at - 1) // steps_per_epoch and epochs_done >= 2
    assert left["epoch"] == epochs_done - epochs_done % 2
    assert left["t"] == left["epoch"] * steps_per_epoch
    assert not path.exists()  # removed at the end


def test_checkpointing_does_not_change_the_fit(tmp_path):
    X, y = make_data()
    reference = ReLURegressor(solver="qsgd", bits=4, **COMMON).fit(X, y)
    path = tmp_path / "fit.ckpt"
    est = ReLURegressor(solver="qsgd", bits=4, checkpoint=path, **COMMON).fit(X, y)
    assert_same_fit(est, reference)
    assert not path.exists()


def test_early_stopping_ensemble_and_weights_resume_in_a_later_run(tmp_path):
    # The interruption falls in the second of three runs: the first, finished,
    # is not redone; the validation rule's state and the weights carry over.
    X, y = make_data()
    weights = np.random.default_rng(1).uniform(0.2, 3, X.shape[0])
    # tol=None: every run takes all 15 epochs of 9 steps (540 training rows),
    # and keeps the parameters of its best validation score.
    params = dict(COMMON, n_ensemble=3, early_stopping=True, max_iter=15, tol=None)
    reference = ReLURegressor(solver=interrupting("qsgd", None), **params).fit(
        X, y, weights
    )
    first = ReLURegressor(
        solver=interrupting("qsgd", 135 + 9 * 5 + 3), checkpoint=tmp_path / "c",
        **params,
    )
    with pytest.raises(Exception, match="injected interruption"):
        first.fit(X, y, weights)
    left = _read(tmp_path / "c")
    assert (left["run"], left["epoch"], len(left["finished"])) == (1, 5, 1)
    resumed = ReLURegressor(
        solver=interrupting("qsgd", None), checkpoint=tmp_path / "c", **params
    ).fit(X, y, weights)
    assert_same_fit(resumed, reference)
    assert resumed.best_validation_score_ == reference.best_validation_score_


def test_random_state_none_resumes_the_interrupted_stream(tmp_path):
    # Without a seed the fit cannot be redone, but it can be continued: the
    # checkpoint keeps the random stream the interrupted fit started from.
    X, y = make_data()
    path = tmp_path / "fit.ckpt"
    params = dict(COMMON, random_state=None, tol=None)
    resumed, left = interrupt_then_resume(path, X, y, "qsgd", 95, 3, **params)
    key, position, has_gauss, cached = left["rng_start"]
    start = np.random.RandomState()
    start.set_state(("MT19937", key, position, has_gauss, cached))
    reference = ReLURegressor(
        solver=interrupting("qsgd", None), **dict(params, random_state=start)
    ).fit(X, y)
    assert_same_fit(resumed, reference)


@pytest.mark.parametrize("joblib_backend", ["loky", "threading"])
def test_joblib_fit_interrupted_by_a_worker_resumes_bit_identically(
    joblib_backend, tmp_path
):
    X, y = make_data()
    params = dict(COMMON, max_iter=12, tol=None)
    reference = ReLURegressor(solver=interrupting("signum", None), **params).fit(X, y)
    path = tmp_path / "fit.ckpt"
    with joblib.parallel_config(backend=joblib_backend):
        resumed, left = interrupt_then_resume(
            path, X, y, "signum", 75, 2, backend="joblib", **params
        )
    assert left["epoch"] == 6
    assert_same_fit(resumed, reference)
    assert not path.exists()


def test_a_checkpoint_moves_between_backends(tmp_path):
    # All backends give the same model, so the backend is not part of the
    # fingerprint: a fit interrupted on joblib resumes in-process.
    X, y = make_data()
    params = dict(COMMON, max_iter=12, tol=None)
    reference = ReLURegressor(solver=interrupting("qsgd", None), **params).fit(X, y)
    path = tmp_path / "fit.ckpt"
    first = ReLURegressor(solver=interrupting("qsgd", 55), checkpoint=path,
                          backend="joblib", **params)
    with joblib.parallel_config(backend="threading"):
        with pytest.raises(Exception, match="injected interruption"):
            first.fit(X, y)
    resumed = ReLURegressor(solver=interrupting("qsgd", None), checkpoint=path,
                            **params).fit(X, y)
    assert_same_fit(resumed, reference)


# -- refusals ------------------------------------------------------------------------
@pytest.fixture
def left_checkpoint(tmp_path):
    X, y = make_data()
    path = tmp_path / "fit.ckpt"
    with pytest.raises(Exception, match="injected interruption"):
        ReLURegressor(solver=interrupting("qsgd", 45), checkpoint=path, **COMMON).fit(
            X, y
        )
    return path, X, y


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(max_iter=41), "max_iter=41 instead of 40"),
        (dict(batch_size=30), "batch_size=30 instead of 60"),
        (dict(random_state=1), "random_state=1 instead of 0"),
        (dict(n_workers=2), "n_workers=2 instead of 3"),
        (dict(solver="qsgd-4"), "solver=QSGD"),
    ],
    ids=lambda value: ",".join(value) if isinstance(value, dict) else None,
)
def test_a_checkpoint_of_other_parameters_is_refused(left_checkpoint, change, named):
    path, X, y = left_checkpoint
    params = dict(COMMON, solver=interrupting("qsgd", None))
    if change.get("solver") == "qsgd-4":
        change = dict(solver=QSGD(bits=4, bucket_size=4))
    est = ReLURegressor(checkpoint=path, **dict(params, **change))
    with pytest.raises(ValueError, match="written by a fit with other parameters") as info:
        est.fit(X, y)
    assert named in str(info.value)
    assert path.exists() and not hasattr(est, "coef_")


@pytest.mark.parametrize("change", ["y", "X", "weights", "float32"])
def test_a_checkpoint_of_other_data_is_refused(left_checkpoint, change):
    path, X, y = left_checkpoint
    weights = None
    if change == "y":
        y = y.copy()
        y[7] += 1e-9
    elif change == "X":
        X = X[::-1]
    elif change == "weights":
        weights = np.ones(X.shape[0])
        weights[0] = 2
    else:
        X = X.astype(np.float32)
    est = ReLURegressor(solver=interrupting("qsgd", None), checkpoint=path, **COMMON)
    with pytest.raises(ValueError, match="written by a fit on other data"):
        est.fit(X, y, weights)
    assert path.exists()


def test_a_warm_start_checkpoint_is_refused_by_a_fresh_fit(tmp_path):
    X, y = make_data()
    path = tmp_path / "fit.ckpt"
    est = ReLURegressor(solver=interrupting("qsgd", None), warm_start=True, **COMMON)
    est.fit(X, y)
    est.set_params(solver=interrupting("qsgd", 25), checkpoint=path)
    with pytest.raises(Exception, match="injected interruption"):
        est.fit(X, y)
    fresh = ReLURegressor(solver=interrupting("qsgd", None), warm_start=True,
                          checkpoint=path, **COMMON)
    with pytest.raises(ValueError, match="another starting model"):
        fresh.fit(X, y)
    # The warm-started estimator itself continues from it.
    est.set_params(solver=interrupting("qsgd", None))
    est.fit(X, y)
    assert not path.exists()


def _archive(**arrays):
    def write(file):
        np.savez(file, **arrays)
    return write


def _truncated(file):
    whole = io.BytesIO()
    np.savez(whole, meta=np.frombuffer(b'{"format": 1}', np.uint8), a0=np.arange(1e3))
    file.write(whole.getvalue()[: len(whole.getvalue()) // 2])


@pytest.mark.parametrize(
    "write, reason",
    [
        (lambda file: file.write(b"not a checkpoint"), "not a NumPy .npz archive"),
        (_truncated, "a truncated or damaged .npz archive"),
        (_archive(x=np.ones(3)), "it has no 'meta' entry"),
        (_archive(meta=np.frombuffer(b"{not json", np.uint8)), "its 'meta' entry is not"),
        (_archive(meta=np.array([{"format": 1}], dtype=object)), "Python objects"),
    ],
    ids=["text", "truncated", "other-arrays", "bad-meta", "pickled"],
)
def test_a_file_that_is_no_checkpoint_is_refused_with_its_reason(tmp_path, write, reason):
    X, y = make_data(n_samples=60)
    path = tmp_path / "fit.ckpt"
    with open(path, "wb") as file:
        write(file)
    with pytest.raises(ValueError, match=re.escape(
        f"checkpoint {str(path)!r} is not a sklearn_relu checkpoint ("
    )) as info:
        ReLURegressor(checkpoint=path, max_iter=3).fit(X, y)
    # The reason, not NumPy's advice to allow pickles.
    assert reason in str(info.value) and "allow_pickle" not in str(info.value)
    assert path.exists()


def test_a_checkpoint_of_another_format_is_refused(tmp_path):
    X, y = make_data(n_samples=60)
    path = tmp_path / "fit.ckpt"
    _write(path, {"format": 99})
    with pytest.raises(ValueError, match="format 99; this version reads format 1"):
        ReLURegressor(checkpoint=path, max_iter=3).fit(X, y)


# -- a checkpoint is data from outside the fit: every field is checked --------------
# Each setup's parameters, solver, and the message at which its worker raises. The
# checkpoints they leave: qsgd after epoch 4 of run 0 (a stateless compressor, the
# loss rule); intsgd with an agreed scale; signum with momentum in every worker;
# the ensemble after epoch 3 of its second run, one run finished, validated.
SETUPS = {
    "qsgd": (COMMON, "qsgd", 45),
    "intsgd": (COMMON, "intsgd", 45),
    "signum": (COMMON, "signum", 45),
    "ensemble": (
        dict(COMMON, n_ensemble=2, early_stopping=True, max_iter=6, tol=None),
        "qsgd", 9 * 6 + 9 * 3 + 3,
    ),
}


def interrupted(tmp_path, setup):
    """``(path, X, y, params, solver)``: the checkpoint a fit of ``setup`` left."""
    params, solver, fail_at = SETUPS[setup]
    X, y = make_data()
    path = tmp_path / "fit.ckpt"
    with pytest.raises(RuntimeError, match="injected interruption"):
        ReLURegressor(
            solver=interrupting(solver, fail_at), checkpoint=path, **params
        ).fit(X, y)
    return path, X, y, params, solver


def craft(path, **changes):
    """Rewrite the checkpoint at ``path`` with ``changes`` (each a value, or a
    function of the saved value), its fingerprints kept: a damaged or edited
    file that still names the fit it continues."""
    content = _read(path)
    for field, change in changes.items():
        content[field] = change(content.get(field)) if callable(change) else change
    _write(path, content)


def entry(key, value):
    """A change of a saved dict: its ``key`` set to ``value``."""
    return lambda saved: {**saved, key: value}


def first_finished(change):
    return lambda finished: [change(finished[0])]


CRAFTED = {
    # name: (setup, changes, the field the refusal names)
    "epoch-beyond-max-iter": ("qsgd", dict(epoch=10**9), "epoch"),
    "negative-epoch": ("qsgd", dict(epoch=-5), "epoch"),
    "fractional-epoch": ("qsgd", dict(epoch=2.5), "epoch"),
    "epoch-as-bool": ("qsgd", dict(epoch=True), "epoch"),
    "epoch-without-its-losses": ("qsgd", dict(epoch=2), "losses"),
    "run-beyond-the-ensemble": ("qsgd", dict(run=1), "run"),
    "steps-not-whole-epochs": ("qsgd", dict(t=41), "t"),
    "no-rule": ("qsgd", dict(rule=None), "rule"),
    "empty-rule": ("qsgd", dict(rule={}), "rule"),
    "rule-count-as-text": ("qsgd", dict(rule=entry("no_change", "3")), "rule"),
    "rule-window-of-other-length": ("qsgd", dict(rule=entry("_window_sum", np.ones(3))),
                                    "rule"),
    "rule-count-beyond-epochs": ("qsgd", dict(rule=entry("_window_size", 99)), "rule"),
    "extra-record-entry": ("qsgd", dict(record=entry("extra", 1)), "record"),
    "negative-record-count": ("qsgd", dict(record=entry("n_messages", -1)), "record"),
    "record-seconds-nan": ("qsgd", dict(record=entry("compute_seconds", math.nan)),
                           "record"),
    "short-worker-rngs": ("qsgd", dict(worker_rngs=lambda saved: saved[:2]),
                          "worker_rngs"),
    "worker-rngs-as-floats": (
        "qsgd", dict(worker_rngs=lambda saved: saved.astype(np.float64)), "worker_rngs"
    ),
    "worker-rngs-rows-of-5": ("qsgd", dict(worker_rngs=lambda saved: saved[:, :5]),
                              "worker_rngs"),
    "worker-rng-even-increment": (
        "qsgd", dict(worker_rngs=lambda saved: saved ^ np.uint64(1)), "worker_rngs"
    ),
    "int8-params": ("qsgd", dict(params=lambda saved: saved.astype(np.int8)), "params"),
    "float32-params-of-a-float64-fit": (
        "qsgd", dict(params=lambda saved: saved.astype(np.float32)), "params"
    ),
    "params-of-other-length": ("qsgd", dict(params=lambda saved: saved[:-1]), "params"),
    "params-nan": ("qsgd", dict(params=lambda saved: saved * np.nan), "params"),
    "params-as-list": ("qsgd", dict(params=lambda saved: saved.tolist()), "params"),
    "infinite-loss": ("qsgd", dict(losses=lambda saved: saved[:-1] + [math.inf]),
                      "losses"),
    "scores-without-validation": ("qsgd", dict(scores=[0.5] * 4), "scores"),
    "finished-run-from-nowhere": ("qsgd", dict(finished=[{}]), "finished"),
    "compressor-state-of-a-stateless-one": (
        "qsgd", dict(compressor_states=np.zeros((3, 9))), "compressor_states"
    ),
    "aggregator-state-of-the-mean": ("qsgd", dict(aggregator_state=np.ones(3)),
                                     "aggregator_state"),
    "scale-of-a-compressor-without-one": ("qsgd", dict(agreed_scale=1.0),
                                          "agreed_scale"),
    "zeroed-rng-start": (
        "qsgd", dict(rng_start=lambda saved: [np.zeros_like(saved[0]), *saved[1:]]),
        "rng_start",
    ),
    "rng-start-of-another-seed": (
        "qsgd", dict(rng_start=lambda saved: [saved[0] + np.uint32(1), *saved[1:]]),
        "rng_start",
    ),
    "rng-start-position-beyond-the-key": (
        "qsgd", dict(rng_start=lambda saved: [saved[0], 625, *saved[2:]]), "rng_start"
    ),
    "fingerprint-as-text": ("qsgd", dict(fingerprint="x"), "fingerprint"),
    "parameters-not-text": ("qsgd", dict(parameters=entry("max_iter", 40)), "parameters"),
    "an-unknown-field": ("qsgd", dict(extra=1), "extra"),
    "zero-scale": ("intsgd", dict(agreed_scale=0.0), "agreed_scale"),
    "huge-scale": ("intsgd", dict(agreed_scale=1e308), "agreed_scale"),
    "nan-scale": ("intsgd", dict(agreed_scale=math.nan), "agreed_scale"),
    "scale-as-text": ("intsgd", dict(agreed_scale="1.0"), "agreed_scale"),
    "momentum-of-two-workers": (
        "signum", dict(compressor_states=lambda saved: saved[:2]), "compressor_states"
    ),
    "momentum-infinite": (
        "signum", dict(compressor_states=lambda saved: saved * np.inf), "compressor_states"
    ),
    "no-momentum": ("signum", dict(compressor_states=None), "compressor_states"),
    "no-scores-with-validation": ("ensemble", dict(scores=None), "scores"),
    "score-above-one": ("ensemble", dict(scores=lambda saved: saved[:-1] + [1.5]),
                        "scores"),
    "best-score-not-the-best": ("ensemble", dict(rule=entry("best_score", 0.5)), "rule"),
    "finished-run-extra-entry": (
        "ensemble", dict(finished=first_finished(entry("extra", 1))), "finished"
    ),
    "finished-run-without-iterations": (
        "ensemble", dict(finished=first_finished(entry("n_iter", 0))), "finished"
    ),
    "finished-run-params-of-other-length": (
        "ensemble", dict(finished=first_finished(entry("params", np.ones(3)))), "finished"
    ),
    "finished-run-stopped-by-callback": (
        "ensemble", dict(finished=first_finished(entry("stopped_by_callback", True))),
        "finished",
    ),
    "finished-run-curve-too-short": (
        "ensemble", dict(finished=first_finished(entry("loss_curve", [0.1]))), "finished"
    ),
}


@pytest.mark.parametrize("setup, changes, field", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_field_is_refused_by_name(tmp_path, setup, changes, field):
    # The fingerprint says which fit a file continues, not that what it holds
    # is what that fit saved: each field is checked before the fit uses it.
    path, X, y, params, solver = interrupted(tmp_path, setup)
    craft(path, **changes)
    est = ReLURegressor(solver=interrupting(solver, None), checkpoint=path, **params)
    with pytest.raises(ValueError, match=re.escape(
        f"checkpoint {str(path)!r}: field {field!r}"
    )):
        est.fit(X, y)
    assert path.exists() and not hasattr(est, "coef_")


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_a_checkpoint_rewritten_unchanged_resumes(tmp_path, setup):
    # The refusals above come from the change, not from rewriting the file.
    path, X, y, params, solver = interrupted(tmp_path, setup)
    craft(path)
    ReLURegressor(solver=interrupting(solver, None), checkpoint=path, **params).fit(X, y)
    assert not path.exists()


def test_a_zeroed_random_stream_is_refused_instead_of_spinning(tmp_path):
    # NumPy draws bounded integers by rejection, in C: a zeroed PCG64 stream
    # is rejected at every draw, forever, where no signal reaches Python. In a
    # process of its own, so that a regression fails after a minute instead
    # of hanging the test suite.
    path, X, y, params, solver = interrupted(tmp_path, "qsgd")
    craft(path, worker_rngs=np.zeros_like)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    code = (
        "import sys, numpy as np\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "from test_checkpoint import COMMON, interrupting\n"
        "from sklearn_relu import ReLURegressor\n"
        f"data = np.load({str(tmp_path / 'data.npz')!r})\n"
        f"ReLURegressor(solver=interrupting('qsgd', None), checkpoint={str(path)!r},\n"
        "              **COMMON).fit(data['X'], data['y'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert f"checkpoint {str(path)!r}: field 'worker_rngs'" in done.stderr, done.stderr
    assert "zero" in done.stderr.splitlines()[-1]


# -- the fingerprint: instances by their parameters ----------------------------------
def negated(vector, rng):
    return -vector


def doubled(vector, rng):
    return 2 * vector


@pytest.mark.parametrize(
    "interrupted_with, resumed_with, named",
    [
        (dict(attack=Scaled(c=4)), dict(attack=Scaled(c=1e6)),
         "attack=Scaled(c=1000000.0) instead of Scaled(c=4)"),
        (dict(attack=negated), dict(attack=doubled), "test_checkpoint.doubled instead of"),
        (dict(shards=DirichletShards(alpha=1.0)), dict(shards=DirichletShards(alpha=0.5)),
         "shards=DirichletShards(alpha=0.5, n_bins=10, by='target', random_state=0) "
         "instead of DirichletShards(alpha=1.0,"),
    ],
    ids=["attack-instance", "attack-function", "shards"],
)
def test_a_checkpoint_of_other_instance_parameters_is_refused(
    tmp_path, interrupted_with, resumed_with, named
):
    X, y = make_data()
    path = tmp_path / "fit.ckpt"
    params = dict(COMMON, n_byzantine=1, aggregation="median")
    with pytest.raises(RuntimeError, match="injected interruption"):
        ReLURegressor(solver=interrupting("qsgd", 45), checkpoint=path,
                      **params, **interrupted_with).fit(X, y)
    est = ReLURegressor(solver=interrupting("qsgd", None), checkpoint=path,
                        **params, **resumed_with)
    with pytest.raises(ValueError, match="written by a fit with other parameters") as info:
        est.fit(X, y)
    assert named in str(info.value)
    # Equal parameters in other instances continue it.
    ReLURegressor(solver=interrupting("qsgd", None), checkpoint=path,
                  **params, **interrupted_with).fit(X, y)
    assert not path.exists()


# -- one fit at a time on a checkpoint -----------------------------------------------
def test_a_second_fit_on_a_checkpoint_in_use_is_refused(tmp_path):
    X, y = make_data()
    path = tmp_path / "fit.ckpt"
    stepping, go = threading.Event(), threading.Event()

    def hold(info):  # the first fit waits at its steps, its checkpoint open
        stepping.set()
        go.wait(60)

    first = ReLURegressor(checkpoint=path, callback=hold,
                          **dict(COMMON, max_iter=3, tol=None))
    thread = threading.Thread(target=first.fit, args=(X, y))
    thread.start()
    try:
        assert stepping.wait(60)
        second = ReLURegressor(checkpoint=path, **COMMON)
        with pytest.raises(ValueError, match=re.escape(
            f"checkpoint {str(path)!r} is in use by another fit"
        )):
            second.fit(X, y)
    finally:
        go.set()
        thread.join(60)
    assert hasattr(first, "coef_") and not hasattr(second, "coef_")
    # The first fit ended: its checkpoint and lock are gone, the path is free.
    assert list(tmp_path.iterdir()) == []
    ReLURegressor(checkpoint=path, **COMMON).fit(X, y)


def test_a_fit_that_raises_frees_its_checkpoint(tmp_path):
    X, y = make_data()
    path = tmp_path / "fit.ckpt"
    with pytest.raises(RuntimeError, match="injected interruption"):
        ReLURegressor(solver=interrupting("qsgd", 45), checkpoint=path, **COMMON).fit(
            X, y
        )
    assert [p.name for p in tmp_path.iterdir()] == ["fit.ckpt"]


def test_a_lock_file_left_by_a_killed_fit_does_not_block(tmp_path):
    # A lock is held by a process, not by its file: a fit killed by SIGKILL
    # leaves the file, which the next fit takes over and removes.
    X, y = make_data(n_samples=60)
    path = tmp_path / "fit.ckpt"
    (tmp_path / "fit.ckpt.lock").write_text("process 12345 on otherhost")
    ReLURegressor(checkpoint=path, max_iter=3, tol=None).fit(X, y)
    assert list(tmp_path.iterdir()) == []


# -- writing -------------------------------------------------------------------------
def test_a_full_disk_names_the_checkpoint_and_leaves_no_partial_file(
    tmp_path, monkeypatch
):
    X, y = make_data()
    path = tmp_path / "fit.ckpt"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=re.escape(
        f"[Errno {errno.ENOSPC}] cannot write checkpoint {str(path)!r}: No space left"
    )) as info:
        ReLURegressor(checkpoint=path, **COMMON).fit(X, y)
    assert info.value.errno == errno.ENOSPC
    # Neither a checkpoint nor a temporary file (the lock goes with the fit:
    # test_a_fit_that_raises_frees_its_checkpoint).
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"] == []


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(checkpoint_every=0), "checkpoint_every must be an integer >= 1"),
        (dict(checkpoint_every=1.5), "checkpoint_every must be an integer >= 1"),
        (dict(checkpoint=3), "checkpoint must be None or a file path"),
        (dict(checkpoint=""), "checkpoint must be None or a file path"),
        (dict(checkpoint="/nonexistent/folder/fit.ckpt"),
         "the folder '/nonexistent/folder' does not exist or is not writable"),
    ],
)
def test_bad_checkpoint_parameters_are_named(params, message):
    X, y = make_data(n_samples=60)
    with pytest.raises(ValueError, match=message):
        ReLURegressor(**params).fit(X, y)


def test_partial_fit_refuses_a_checkpoint(tmp_path):
    X, y = make_data(n_samples=60)
    with pytest.raises(ValueError, match="checkpoint applies to fit"):
        ReLURegressor(checkpoint=tmp_path / "c").partial_fit(X, y)


# -- atomicity ---------------------------------------------------------------------
def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "fit.ckpt"
    path.write_bytes(b"the previous checkpoint")

    def half_then_fail(temporary):
        with open(temporary, "wb") as file:
            file.write(b"half of a new one")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"the previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["fit.ckpt"]


CLI_DATA = dict(n_samples=20000, n_features=100)
CLI_ARGS = ["--solver", "qsgd", "--bits", "4", "--batch-size", "100", "--max-iter",
            "60", "--tol", "none", "--random-state", "0", "--checkpoint-every", "2",
            "--verbose", "1"]


def _checkpoint_epoch(path):
    try:
        return _read(path)["epoch"]
    except ValueError:  # not written yet
        return None


def test_a_cli_fit_killed_again_and_again_resumes_bit_identically(tmp_path):
    # SIGKILL at any moment, a checkpoint being written included: the file on
    # disk is always a whole checkpoint, and the same command run again ends
    # with the model of a fit never killed.
    X, y = make_relu_regression(random_state=0, **CLI_DATA)
    data = tmp_path / "data.npz"
    np.savez(data, X=X, y=y)
    out, path = tmp_path / "model.joblib", tmp_path / "fit.ckpt"
    command = [sys.executable, "-m", "sklearn_relu", "fit", str(data), "--out",
               str(out), "--checkpoint", str(path), *CLI_ARGS]
    resumed_at = []
    for kill_after in (4, 14):
        with open(tmp_path / "log", "wb") as log:
            run = subprocess.Popen(command, stderr=log)
            deadline = time.monotonic() + 120
            while (_checkpoint_epoch(path) or 0) < kill_after:
                assert run.poll() is None, (tmp_path / "log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.005)
            run.send_signal(signal.SIGKILL)
            run.wait()
        resumed_at.append(_read(path)["epoch"])
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resumed from checkpoint {path} after epoch {resumed_at[-1]}" in done.stderr
    assert resumed_at[0] >= 4 and resumed_at[1] >= 14
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "log", "model.joblib"]
    # The uninterrupted fit: the same command without a checkpoint, in a
    # process of its own as the others (this one's BLAS may have been set to
    # another number of threads by earlier tests, which moves the last bits).
    uninterrupted = tmp_path / "uninterrupted.joblib"
    plain = [str(uninterrupted) if part == str(out) else part for part in command]
    at = plain.index("--checkpoint")
    del plain[at : at + 2]
    done = subprocess.run(plain, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    est, reference = joblib.load(out), joblib.load(uninterrupted)
    np.testing.assert_array_equal(est.coef_, reference.coef_)
    assert est.intercept_ == reference.intercept_
    assert est.loss_curve_ == reference.loss_curve_


def test_cli_checkpoint_options_reach_the_estimator(tmp_path):
    X, y = make_relu_regression(n_samples=200, n_features=4, random_state=0)
    data = tmp_path / "data.npz"
    np.savez(data, X=X, y=y)
    out = tmp_path / "m.joblib"
    done = subprocess.run(
        [sys.executable, "-m", "sklearn_relu", "fit", str(data), "--out", str(out),
         "--checkpoint", str(tmp_path / "c"), "--checkpoint-every", "3", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)
    params = joblib.load(out).get_params()
    assert (params["checkpoint"], params["checkpoint_every"]) == (str(tmp_path / "c"), 3)
    bad = subprocess.run(
        [sys.executable, "-m", "sklearn_relu", "fit", str(data), "--out", str(out),
         "--checkpoint", str(tmp_path / "no" / "c")],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode != 0
    assert "does not exist or is not writable" in bad.stderr
    assert not os.path.exists(tmp_path / "no")


@pytest.mark.skipif(
    tuple(int(p) for p in importlib.metadata.version("skops").split(".")[:2]) < (0, 12),
    reason="skops before 0.12 cannot load a pathlib path (it has no __dict__)",
)
def test_a_model_with_a_path_as_checkpoint_saves_and_loads_safely(tmp_path):
    # skops refuses types it does not trust; a pathlib path is only its string.
    X, y = make_data(n_samples=60)
    est = ReLURegressor(checkpoint=tmp_path / "c", max_iter=2, tol=None).fit(X, y)
    save_model(est, tmp_path / "m.skops")
    assert load_model(tmp_path / "m.skops").checkpoint == tmp_path / "c"
