"""Byzantine workers in the estimator: attacks, the start's statistics under
attack, the same bits on every backend, every error, and the targets on the
planted model (noiseless, d = 100, 10 workers drawing 200 points each a step).

The whole grid of rules, attacks and numbers of Byzantine workers is marked
``slow`` (``pytest -m slow``); a representative part runs by default.
"""

import math
import warnings

import joblib
import numpy as np
import pytest
from _planted import planted_problem, relative_error, steps_to
from sklearn.exceptions import ConvergenceWarning

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._init import worker_moments
from sklearn_relu._step_size import worker_curvature
from sklearn_relu._worker import ShardWorker
from sklearn_relu.aggregation import BlockGeometricMedian
from sklearn_relu.attacks import (
    FunctionAttack,
    Gaussian,
    Scaled,
    SignFlip,
    available_attacks,
    get_attack,
)
from sklearn_relu.backends import InProcessBackend
from sklearn_relu.compression import Identity

RULES = ["geometric_median", "bgmd", "median", "trimmed_mean", "krum", "centered_clip"]


def small_fit(backend="inprocess", **params):
    X, y = make_relu_regression(n_samples=600, n_features=9, noise=0.1, random_state=2)
    kw = dict(n_workers=5, batch_size=100, max_iter=2, tol=None, random_state=5)
    return ReLURegressor(backend=backend, **{**kw, **params}).fit(X, y)


# -- attacks ------------------------------------------------------------------------------
def test_the_attacks_by_name():
    assert available_attacks() == [
        "alie", "gaussian", "ipm", "label_flip", "mimic", "optimal_alie",
        "optimal_ipm", "scaled", "sign_flip", "zero",
    ]
    g = np.array([1.0, -2.0])
    assert get_attack("sign_flip")(g, None).tolist() == [-1.0, 2.0]
    assert get_attack("scaled")(g, None).tolist() == [-4.0, 8.0]
    assert Scaled(c=0.5)(g, None).tolist() == [-0.5, 1.0]
    assert get_attack("zero")(g, None).tolist() == [0.0, 0.0]
    noise = get_attack("gaussian")(np.zeros(20000), np.random.default_rng(0))
    # N(0, 100^2): the sample std of 20000 draws is within 3% of 100 with
    # probability 1 - 1e-10.
    assert abs(noise.std() - 100) < 3 and abs(noise.mean()) < 3
    assert get_attack(SignFlip()) == SignFlip()
    assert isinstance(get_attack(lambda g, rng: g), FunctionAttack)


@pytest.mark.parametrize(
    "attack, match",
    [
        ("flip", r"attack must be one of \['alie', 'gaussian', .*, 'zero'\] or a "
                 r"callable or an Attack instance, got 'flip'"),
        (3, r"attack must be one of .* got 3"),
    ],
)
def test_an_unknown_attack_is_rejected(attack, match):
    with pytest.raises(ValueError, match=match):
        small_fit(attack=attack, n_byzantine=1, aggregation="median")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Scaled(c=math.inf), "c must be a finite float, got inf"),
        (lambda: Gaussian(std=0), "std must be a positive finite float, got 0"),
    ],
)
def test_bad_attack_parameters_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "function, match",
    [
        # The first vector sent is the start's moments: 2 d + 2 values.
        (lambda g, rng: g[:-1], r"returned shape \(19,\), expected \(20,\)"),
        (lambda g, rng: g * np.inf, "returned non-finite values"),
    ],
)
def test_a_callable_attack_that_returns_nonsense_is_reported(function, match):
    with pytest.raises(ValueError, match=match):
        small_fit(attack=function, n_byzantine=1, aggregation="median")


def test_a_byzantine_worker_that_tells_the_truth_changes_nothing():
    # The attack's random stream is the worker's own: an attack that returns
    # its input (after drawing) leaves the batches and the quantization as an
    # honest fit draws them.
    def honest(vector, rng):
        rng.standard_normal(3)
        return vector

    for solver in ("sgd", "qsgd"):
        reference = small_fit(solver=solver, aggregation="median")
        est = small_fit(solver=solver, aggregation="median", n_byzantine=2, attack=honest)
        np.testing.assert_array_equal(est.coef_, reference.coef_)


def test_the_attack_sees_gradients_before_the_compressor_and_the_bytes_stay_honest():
    seen = []

    def record(vector, rng):
        seen.append(vector.copy())
        return -vector

    est = small_fit(solver="qsgd", bits=4, aggregation="median", n_byzantine=2,
                    attack=record)
    honest = small_fit(solver="qsgd", bits=4, aggregation="median")
    # Float vectors, not encoded messages: each of the two Byzantine workers'
    # gradients at every step (float64, the model's size: 9 features and the
    # intercept), besides the statistics (moments, losses, float32 Hessian
    # products).
    assert all(np.issubdtype(v.dtype, np.floating) for v in seen)
    assert sum(v.shape == (10,) and v.dtype == np.float64 for v in seen) >= 2 * est.t_
    # Every message, Byzantine or not, is a 4-bit QSGD message of that size.
    assert est.comm_record_.bytes_sent == honest.comm_record_.bytes_sent
    assert est.comm_record_.n_messages == honest.comm_record_.n_messages


def test_the_first_n_byzantine_workers_lie_in_their_gradients_and_statistics():
    X, y = make_relu_regression(n_samples=500, n_features=4, random_state=0)
    start = dict(n_workers=5, batch_size=100, compressor=Identity())
    lying, honest = InProcessBackend(), InProcessBackend()
    lying.start(X, y, None, n_byzantine=2, attack=Scaled(c=3), **start)
    honest.start(X, y, None, **start)
    params = np.random.default_rng(0).normal(size=4)
    for statistic, args in [(ShardWorker.gradient, (params,)), (worker_moments, (True,)),
                            (ShardWorker.loss, (params,)), (worker_curvature, (params,))]:
        told, truth = lying.call(statistic, *args), honest.call(statistic, *args)
        for index in range(5):
            expected = -3 * truth[index] if index < 2 else truth[index]
            np.testing.assert_array_equal(told[index], expected)
    lying.reseed(1)
    honest.reseed(1)
    for index, (a, b) in enumerate(zip(lying.workers, honest.workers)):
        sent = Identity().decompress(a.gradient_message(params), 4)
        true = Identity().decompress(b.gradient_message(params), 4)
        np.testing.assert_array_equal(sent, -3 * true if index < 2 else true)


# -- the same model everywhere ------------------------------------------------------------
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("joblib_backend", ["threading", "loky"])
def test_every_rule_under_attack_gives_the_same_bits_on_every_backend(rule, joblib_backend):
    # Gaussian noise is drawn by each Byzantine worker where it runs.
    params = dict(aggregation=rule, n_byzantine=1, attack="gaussian")
    reference = small_fit(**params)
    with joblib.parallel_config(backend=joblib_backend):
        est = small_fit("joblib", **params)
    np.testing.assert_array_equal(est.coef_, reference.coef_)
    assert est.intercept_ == reference.intercept_
    assert est.learning_rate_ == reference.learning_rate_


def test_an_aggregator_instance_is_copied_and_its_memory_restarts_with_each_run():
    rule = BlockGeometricMedian(block_size=3)
    first = small_fit(aggregation=rule)
    assert rule._memory is None  # the fit used a copy
    again = small_fit(aggregation=rule)
    np.testing.assert_array_equal(first.coef_, again.coef_)
    # An ensemble's runs each start with an empty memory: run 0 of an ensemble
    # is the single fit.
    ensemble = small_fit(aggregation=rule, n_ensemble=2)
    np.testing.assert_array_equal(ensemble.ensemble_coef_[0], first.coef_[None][0])


# -- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, match",
    [
        (dict(aggregation="geometric_median", n_byzantine=3),
         r"aggregation=GeometricMedian\(nu=1e-06, max_iter=1000, tol=1e-06\) withstands at "
         r"most 2 Byzantine worker\(s\) of 5 \(breakdown point 1/2\); n_byzantine=3 is at "
         r"or beyond it"),
        (dict(aggregation="krum", n_byzantine=2),
         r"aggregation=Krum\(n_byzantine=None\) withstands at most 1 Byzantine worker\(s\) of 5"),
        (dict(aggregation="majority", solver="signsgd", n_byzantine=3),
         r"aggregation=MajorityVote\(\) withstands at most 2"),
        (dict(aggregation="mean", n_byzantine=5),
         "n_byzantine=5 must be below n_workers=5: at least one worker must be honest"),
        (dict(n_byzantine=-1), "n_byzantine must be an integer >= 0, got -1"),
        (dict(n_byzantine=1.0), "n_byzantine must be an integer >= 0, got 1.0"),
        (dict(aggregation="median", solver="intsgd"),
         r"aggregation=CoordinateMedian\(\) needs every worker's message, but IntSGD\(.*\) "
         "messages only exist summed; use another solver or aggregation='mean'"),
    ],
)
def test_bad_byzantine_settings_are_rejected(params, match):
    with pytest.raises(ValueError, match=match):
        small_fit(**params)


def test_the_mean_under_attack_warns_that_it_has_no_defence():
    with pytest.warns(UserWarning, match=r"aggregation=Mean\(\) has breakdown point 0: a "
                      r"single Byzantine worker can move it arbitrarily, and n_byzantine=1"):
        small_fit(n_byzantine=1, attack="zero")


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_lies_that_zero_the_weights_name_the_attack_not_the_data(fit_intercept):
    # Scaled(c=-4) of one worker in five cancels the others' weight sums: the
    # start's centring divided by 0 and blamed X's magnitude.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)  # the mean's
        with pytest.raises(ValueError, match="total sample weight of 0; with "
                           "Byzantine workers use a robust aggregation"):
            small_fit(n_byzantine=1, attack="scaled", fit_intercept=fit_intercept)


def gaussian_liar_fit(**params):
    """One Gaussian liar among 5 workers, under the mean, on data where its
    lies reached the start and the step."""
    X, y = make_relu_regression(n_samples=200, n_features=5, noise=0.05, random_state=0)
    return ReLURegressor(n_workers=5, n_byzantine=1, attack="gaussian", random_state=0,
                         max_iter=5, **params).fit(X, y)


def test_a_negative_curvature_from_lies_is_refused_not_used_as_a_step():
    # H is positive semi-definite; a Gaussian liar made the power iteration's
    # eigenvalue negative and the automatic step negative (-10.9).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match="negative eigenvalue"):
            gaussian_liar_fit(fit_intercept=False)


def test_a_negative_curvature_is_refused_only_where_the_statistics_are_summed():
    # The sum of honest shards' Hessian products is positive semi-definite; a
    # robust rule's combination (n times a median) need not be, honestly.
    from sklearn_relu._step_size import measure_curvature, worker_curvature

    def reduce(statistic, *args):
        if statistic is worker_curvature:
            return np.array([10.0, 5.0, 5.0, 10.0])  # R = 2
        return -args[-1]  # Hessian products of -I

    def measure(summed):
        return measure_curvature(reduce, np.zeros(3), np.random.RandomState(0),
                                 summed=summed)

    with pytest.raises(ValueError, match=r"negative eigenvalue \(-0.2\)"):
        measure(summed=True)
    assert measure(summed=False) == (0.0, 2.0)


def test_a_divergence_under_an_undefended_attack_blames_the_attack():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(FloatingPointError, match=r"SGD diverged: .*\. n_byzantine=1 "
                           r"Byzantine worker\(s\) attack aggregation=Mean\(\)"):
            gaussian_liar_fit(fit_intercept=True, learning_rate=5.0)


def test_a_fit_ruined_by_an_undefended_attack_blames_the_attack():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gaussian_liar_fit(fit_intercept=True)
    advice = [str(w.message) for w in caught if w.category is ConvergenceWarning]
    assert advice and all("n_byzantine=1 Byzantine worker(s) attack aggregation=Mean()"
                          in message for message in advice)
    assert not any("standardized" in message for message in advice)


# -- the start under attack ---------------------------------------------------------------
# The planted model of the targets: d = 100, n = 20000, noiseless, seed 0;
# 10 workers draw 200 points each a step (batch 2000): 10 steps an epoch.
@pytest.fixture(scope="module")
def planted():
    return planted_problem()


def planted_fit(planted, **params):
    X, y, w = planted
    kw = dict(n_workers=10, batch_size=2000, tol=None, fit_intercept=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the mean's
        return ReLURegressor(**{**kw, **params}).fit(X, y)


def start_of(planted, **params):
    """The initial point and the automatic step: a fit whose only step is
    ``1e-300`` times the gradient."""
    est = planted_fit(planted, max_iter=1, **params)
    step = est.learning_rate_
    est = planted_fit(planted, max_iter=1, learning_rate=1e-300, **params)
    return est, step


@pytest.mark.parametrize("attack", [Scaled(c=4), Gaussian(std=100)], ids=["scaled", "gaussian"])
def test_the_start_and_the_automatic_step_withstand_the_attack(planted, attack):
    X, y, w = planted
    honest, honest_step = start_of(planted, aggregation="geometric_median")
    attacked, attacked_step = start_of(planted, aggregation="geometric_median",
                                       n_byzantine=4, attack=attack)
    # The spectral start's error is about sqrt(2 d / n) = 0.1 from all rows.
    # Measured from the shards' geometric median: 0.107 without attackers,
    # 0.157 (scaled) and 0.133 (gaussian) with 4 of 10.
    assert relative_error(honest, w) < 0.15
    assert relative_error(attacked, w) < 0.25
    # The curvature measured robustly: measured, the step is 1.20 (scaled)
    # and 1.10 (gaussian) times the honest one; 4 of 10 vectors far away
    # move a geometric median by a fraction of the honest ones' spread.
    assert abs(attacked_step / honest_step - 1) < 0.3
    # The mean's start is the attackers' (or no start at all).
    try:
        mean, _ = start_of(planted, n_byzantine=4, attack=attack)
    except (ValueError, FloatingPointError):
        return
    assert relative_error(mean, w) > 0.5


# -- targets ------------------------------------------------------------------------------
ATTACKS = {"scaled": Scaled(c=4), "gaussian": Gaussian(std=100)}
# Measured steps to 1e-6 (counted 100 at a time): the geometric median 100
# in every case; BGMD 200-300 (scaled), 400-800 (gaussian).
GRID = [
    (rule, attack, f) for rule in ("geometric_median", "bgmd") for attack in ATTACKS
    for f in (2, 3, 4)
]
FAST = {("geometric_median", "scaled", 4), ("geometric_median", "gaussian", 4),
        ("bgmd", "scaled", 4), ("bgmd", "gaussian", 2)}


@pytest.mark.parametrize(
    "rule, attack, f",
    [pytest.param(*case, marks=() if case in FAST else pytest.mark.slow) for case in GRID],
)
def test_robust_rules_reach_1e_6_under_attack(planted, rule, attack, f):
    # Within the default budget, max_iter=200 epochs of 10 steps.
    steps = steps_to(planted, 1e-6, 2000, aggregation=rule, n_byzantine=f,
                     attack=ATTACKS[attack])
    assert steps <= (200 if rule == "geometric_median" else 2000)


@pytest.mark.parametrize(
    "attack, f",
    [pytest.param(a, f, marks=() if (a, f) == ("scaled", 2) else pytest.mark.slow)
     for a in ATTACKS for f in (2, 3, 4)],
)
def test_the_mean_under_the_same_attack_diverges_or_ends_above_1(planted, attack, f):
    try:
        est = planted_fit(planted, max_iter=20, n_byzantine=f, attack=ATTACKS[attack])
    except (FloatingPointError, ValueError) as error:
        # Diverged, or the lies made the start's statistics meaningless (an
        # error that says so and names the remedy).
        assert "diverged" in str(error) or "robust aggregation" in str(error)
        return
    X, y, w = planted
    assert relative_error(est, w) > 1


@pytest.mark.parametrize(
    "rule", [pytest.param(r, marks=pytest.mark.slow if r == "bgmd" else ()) for r in
             ["mean", *RULES]]
)
def test_every_rule_reaches_1e_6_without_attack(planted, rule):
    # Measured (counted 100 at a time): 100 steps, BGMD 200.
    assert steps_to(planted, 1e-6, 1000, aggregation=rule) <= 500


def test_majority_vote_withstands_4_sign_flipping_workers_of_10(planted):
    # Measured: 1200 steps (counted 100 at a time); 1000 with no attacker.
    steps = steps_to(planted, 1e-4, 3000, solver="signsgd", aggregation="majority",
                     n_byzantine=4, attack="sign_flip")
    assert steps <= 3000
