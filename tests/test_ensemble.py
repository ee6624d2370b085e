"""The ensemble rule (docs/theory.rst, "The ensemble rule"): a spoiled minority of
runs cannot win."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_relu import ReLURegressor, make_relu_regression, select_consistent_run
from sklearn_relu.backends import InProcessBackend


def unit_ball(rng, n, d):
    u = rng.standard_normal((n, d))
    return u / np.linalg.norm(u, axis=1, keepdims=True) * rng.uniform(0, 1, (n, 1))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    n_runs=st.integers(1, 11),
    d=st.integers(1, 6),
    eps=st.floats(1e-8, 1.0),
    seed=st.integers(0, 2**32 - 1),
    garbage=st.sampled_from(["far", "clustered", "near_miss", "huge", "nan"]),
)
def test_a_spoiled_minority_never_wins(n_runs, d, eps, seed, garbage):
    # Good runs are within eps of the truth; fewer than half are spoiled in any
    # way. The chosen run is within 3 eps of the truth (Tan and Vershynin).
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal(d)
    n_bad = (n_runs - 1) // 2
    runs = truth + eps * unit_ball(rng, n_runs, d)
    bad = rng.choice(n_runs, n_bad, replace=False)
    if garbage == "far":
        runs[bad] = truth + 100 * rng.standard_normal((n_bad, d))
    elif garbage == "clustered":  # the spoiled runs agree with each other
        runs[bad] = truth + 5 + eps * unit_ball(rng, n_bad, d) * 1e-3
    elif garbage == "near_miss":  # just outside the good cluster
        runs[bad] = truth + 4 * eps * (1 + rng.uniform(0, 1, (n_bad, 1)))
    elif garbage == "huge":
        runs[bad] = rng.choice([-1e300, 1e300], (n_bad, d))
    else:
        runs[bad] = np.nan
    chosen = select_consistent_run(runs)
    assert chosen not in bad or garbage == "near_miss"
    assert np.linalg.norm(runs[chosen] - truth) <= 3 * eps * (1 + 1e-9)


def test_single_run_and_ties():
    assert select_consistent_run([[1.0, 2.0]]) == 0
    assert select_consistent_run([[0.0], [0.0]]) == 0
    # Two clusters of two: either is "consistent"; the rule is deterministic.
    runs = [[0.0], [10.0], [0.1], [10.1]]
    assert select_consistent_run(runs) == select_consistent_run(runs)


class SpoilingBackend(InProcessBackend):
    """The in-process backend, except that in the runs listed in ``spoiled`` every
    step is pushed by a fixed offset, so those runs settle at a wrong point.

    The estimator reseeds the workers once before each run, which is how the
    backend knows which run it is in.
    """

    def __init__(self, spoiled, offset_scale=0.3):
        super().__init__()
        self.spoiled, self.offset_scale = set(spoiled), offset_scale
        self.run = -1

    def reseed(self, entropy):
        super().reseed(entropy)
        self.run += 1
        self._offset = np.random.default_rng(self.run).standard_normal()

    def step(self, params, update):
        new = super().step(params, update)
        if self.run in self.spoiled:
            new = new + self.offset_scale * self._offset
        return new


@pytest.mark.parametrize("spoiled", [{0}, {0, 2}, {1, 3}, {0, 1}])
def test_estimator_picks_a_good_run_when_a_minority_is_spoiled(spoiled):
    X, y, w_star = make_relu_regression(n_samples=400, n_features=10, coef=True,
                                        random_state=0)
    backend = SpoilingBackend(spoiled)
    est = ReLURegressor(n_ensemble=5, fit_intercept=False, max_iter=30, tol=None,
                        backend=backend, random_state=0).fit(X, y)
    assert backend.run == 4  # five runs were made
    errors = np.linalg.norm(est.ensemble_coef_ - w_star, axis=1) / np.linalg.norm(w_star)
    assert np.all(errors[sorted(spoiled)] > 0.01)  # the spoiling did spoil
    good = [r for r in range(5) if r not in spoiled]
    assert np.all(errors[good] < 1e-6)
    assert np.linalg.norm(est.coef_ - w_star) / np.linalg.norm(w_star) < 1e-6


def test_ensemble_without_spoiling():
    X, y, w_star = make_relu_regression(n_samples=400, n_features=10, coef=True,
                                        random_state=1)
    params = dict(solver="qsgd", bits=4, max_iter=100, tol=None, random_state=0)
    est = ReLURegressor(n_ensemble=3, **params).fit(X, y)
    assert est.ensemble_coef_.shape == (3, 10)
    # The runs are independent (different batches) but all good.
    assert not np.array_equal(est.ensemble_coef_[0], est.ensemble_coef_[1])
    assert any(np.array_equal(est.coef_, run) for run in est.ensemble_coef_)
    assert np.linalg.norm(est.coef_ - w_star) / np.linalg.norm(w_star) < 1e-6
    # Every run sent its messages.
    single = ReLURegressor(**params).fit(X, y)
    assert est.comm_record_.n_messages == 3 * single.comm_record_.n_messages
