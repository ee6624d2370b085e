"""Averaged iterates (``average=``), as ``SGDRegressor(average=...)`` keeps them
(docs/user_guide.rst, "Averaged iterates"): checked against a naive average of
the iterates the callback sees."""

import numpy as np
import pytest
from sklearn.base import clone
from test_checkpoint import assert_same_fit, interrupt_then_resume, interrupting

from sklearn_relu import ReLURegressor, make_relu_regression


def data(n_samples=300, n_features=6):
    return make_relu_regression(n_samples=n_samples, n_features=n_features, noise=0.5,
                                random_state=0)


class Iterates:
    """A callback keeping ``(step, params)`` after every step."""

    def __init__(self):
        self.seen = []

    def __call__(self, info):
        # Not the call at a run's start (step 0, or a continuing fit's last).
        if info.step > (self.seen[-1][0] if self.seen else 0):
            self.seen.append((info.step, np.array(info.params, dtype=np.float64)))


def naive_average(seen, start, batch_size):
    """scikit-learn's rule: the plain mean of the iterates after the steps whose
    samples seen (``batch_size`` a step) reach ``start``."""
    kept = [params for step, params in seen if step * batch_size >= start]
    return np.mean(kept, axis=0), len(kept)


@pytest.mark.parametrize("average, start", [(True, 1), (1, 1), (600, 600), (1200, 1200)])
@pytest.mark.parametrize("local_steps", [1, 3])
def test_the_model_is_the_average_of_the_iterates(average, start, local_steps):
    X, y = data()
    iterates = Iterates()
    est = ReLURegressor(average=average, batch_size=30, n_workers=3, max_iter=5, tol=None,
                        local_steps=local_steps, random_state=0, callback=iterates).fit(X, y)
    mean, count = naive_average(iterates.seen, start, 30)
    assert len(iterates.seen) == est.comm_record_.n_rounds and count > 0
    np.testing.assert_allclose(np.append(est.coef_, est.intercept_), mean, rtol=1e-12,
                               atol=1e-14)
    assert est._averaged[1][1] == count


def test_the_last_iterate_is_unchanged_by_averaging():
    X, y = data()
    last, plain = Iterates(), Iterates()
    common = dict(batch_size=30, max_iter=4, tol=None, random_state=0)
    ReLURegressor(average=True, callback=last, **common).fit(X, y)
    est = ReLURegressor(callback=plain, **common).fit(X, y)
    np.testing.assert_array_equal(last.seen[-1][1], plain.seen[-1][1])
    np.testing.assert_array_equal(np.append(est.coef_, est.intercept_), plain.seen[-1][1])


def test_no_iterate_averaged_yet_leaves_the_last_one():
    X, y = data()
    est = ReLURegressor(average=10**9, batch_size=30, max_iter=2, tol=None,
                        random_state=0).fit(X, y)
    plain = ReLURegressor(batch_size=30, max_iter=2, tol=None, random_state=0).fit(X, y)
    np.testing.assert_array_equal(est.coef_, plain.coef_)


@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_continuing_fits_continue_the_average_and_the_steps(how):
    X, y = data()
    iterates = Iterates()
    est = ReLURegressor(average=True, batch_size=30, max_iter=2, tol=None,
                        learning_rate=0.02, random_state=0, callback=iterates)
    for _ in range(3):
        if how == "partial_fit":
            est.partial_fit(X, y)
        else:
            est.set_params(warm_start=True).fit(X, y)
    mean, _ = naive_average(iterates.seen, 1, 30)
    np.testing.assert_allclose(np.append(est.coef_, est.intercept_), mean, rtol=1e-12)
    # The steps went on from the last iterate, not from the average.
    steps = [step for step, _ in iterates.seen]
    assert steps == list(range(1, est.t_ + 1))


def test_an_averaging_fit_resumes_bit_identically(tmp_path):
    X, y = make_relu_regression(n_samples=600, n_features=8, noise=0.1, random_state=0)
    common = dict(batch_size=60, n_workers=3, random_state=0, max_iter=12, tol=None,
                  average=200)
    resumed, left = interrupt_then_resume(tmp_path / "fit.ckpt", X, y, "qsgd", 75, 2,
                                          **common)
    reference = ReLURegressor(solver=interrupting("qsgd", None), **common).fit(X, y)
    assert left["average"]["count"] > 0
    assert_same_fit(resumed, reference)


def test_averaging_is_a_parameter_like_any_other():
    est = ReLURegressor(average=5)
    assert clone(est).get_params()["average"] == 5


@pytest.mark.parametrize("value", [-1, 1.5, "yes", None])
def test_bad_average_is_named(value):
    X, y = data()
    with pytest.raises((ValueError, TypeError), match="average"):
        ReLURegressor(average=value).fit(X, y)


@pytest.mark.parametrize("flag, value", [
    ([], False), (["--average"], True), (["--average", "true"], True),
    (["--average", "False"], False), (["--average", "500"], 500),
])
def test_the_command_line_average_flag(flag, value):
    from sklearn_relu._cli import build_parser

    args = build_parser().parse_args(["fit", "d.npz", "--out", "m", *flag])
    assert args.average == value and type(args.average) is type(value)


def test_average_zero_keeps_the_last_iterate():
    X, y = data()
    common = dict(batch_size=30, max_iter=2, tol=None, random_state=0)
    zero = ReLURegressor(average=0, **common).fit(X, y)
    plain = ReLURegressor(**common).fit(X, y)
    np.testing.assert_array_equal(zero.coef_, plain.coef_)
