"""Attacks that see the honest workers (ALIE, IPM, their optimal forms, Mimic)
and label flipping: each against a naive reference from its paper, applied by
the backend where every decoded vector is known, the same bits on every
backend, and their errors."""

import copy
import math
import statistics
import warnings

import joblib
import numpy as np
import pytest

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.aggregation import get_aggregator
from sklearn_relu.attacks import (
    ALIE,
    IPM,
    LabelFlip,
    Mimic,
    OptimalALIE,
    OptimalIPM,
    baruch_z,
    get_attack,
    replace_byzantine,
)
from sklearn_relu.backends import InProcessBackend
from sklearn_relu.compression import Identity, SignSGD


def honest_vectors(seed, n=7, d=5):
    return np.random.default_rng(seed).normal(size=(n, d))


def mean_and_std_reference(honest):
    """Coordinate by coordinate, with the standard library."""
    columns = list(zip(*honest.tolist()))
    return (np.array([statistics.fmean(c) for c in columns]),
            np.array([statistics.stdev(c) for c in columns]))


def z_reference(n, f):
    """Baruch et al. 2019: s = floor(n/2 + 1) - f supporters needed, and z the
    largest with Phi(z) < (n - s) / n."""
    s = math.floor(n / 2 + 1) - f
    return statistics.NormalDist().inv_cdf((n - s) / n)


@pytest.mark.parametrize("n, f", [(10, 1), (10, 2), (10, 3), (25, 12), (7, 3)])
def test_baruchs_z(n, f):
    assert baruch_z(n, f) == pytest.approx(z_reference(n, f), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("z", [None, 1.5])
def test_alie_sends_mean_minus_z_std(seed, z):
    honest = honest_vectors(seed)
    mean, std = mean_and_std_reference(honest)
    zz = z_reference(10, 3) if z is None else z
    got = ALIE(z=z).craft(None, honest, None, None, n_byzantine=3)
    np.testing.assert_allclose(got, mean - zz * std, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_ipm_sends_minus_eps_mean(seed):
    honest = honest_vectors(seed)
    mean, _ = mean_and_std_reference(honest)
    np.testing.assert_allclose(IPM().craft(None, honest, None, None, 2), -0.1 * mean,
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(IPM(eps=3).craft(None, honest, None, None, 2), -3 * mean,
                               rtol=1e-12, atol=1e-15)


def line_search_reference(honest, f, rule, vector_of, factors):
    """Every factor's vector sent f times, aggregated; the distance from the
    rule's output when all n send the honest mean; the first largest wins."""
    mean, std = mean_and_std_reference(honest)
    target = rule([mean] * (f + len(honest)))
    distances = [np.linalg.norm(rule([vector_of(c, mean, std)] * f + list(honest)) - target)
                 for c in factors]
    return factors[int(np.argmax(distances))]


@pytest.mark.parametrize("rule_name", ["geometric_median", "median", "krum",
                                       "trimmed_mean", "nnm+geometric_median"])
@pytest.mark.parametrize("seed", range(3))
def test_the_optimal_attacks_search_the_factor_against_the_rule(rule_name, seed):
    honest = honest_vectors(seed)
    f = 2

    def rule(vectors):
        aggregator = get_aggregator(rule_name)
        aggregator.check_byzantine(f, len(vectors))
        return aggregator.aggregate(vectors, Identity())

    factors = [float(c) for c in np.arange(0, 10.25, 0.25)]
    for attack, vector_of in [
        (OptimalALIE(), lambda c, m, s: m - c * s),
        (OptimalIPM(), lambda c, m, s: -c * m),
    ]:
        best = line_search_reference(honest, f, rule, vector_of, factors)
        assert attack.best_factor(honest, rule, f) == best
        mean, std = mean_and_std_reference(honest)
        np.testing.assert_allclose(attack.craft(None, honest, rule, None, f),
                                   vector_of(best, mean, std), rtol=1e-12, atol=1e-12)


def test_the_optimal_alie_beats_baruchs_z_against_the_rule_it_searched():
    honest = honest_vectors(0, n=7, d=40)
    rule = get_aggregator("geometric_median")
    mean = honest.mean(axis=0)

    def moved(sent):
        return np.linalg.norm(rule.aggregate([sent] * 3 + list(honest), Identity()) / 10
                              - mean)

    fixed = ALIE().craft(None, honest, None, None, 3)
    searched = OptimalALIE().craft(
        None, honest, lambda v: rule.aggregate(v, Identity()), None, 3
    )
    assert moved(searched) >= moved(fixed)


def test_mimic_copies_one_honest_worker():
    honest = honest_vectors(1)
    np.testing.assert_array_equal(Mimic().craft(None, honest, None, None, 3), honest[0])
    np.testing.assert_array_equal(Mimic(worker=4).craft(None, honest, None, None, 3),
                                  honest[4])
    with pytest.raises(ValueError, match="copies honest worker 7, but there are 7"):
        Mimic(worker=7).craft(None, honest, None, None, 3)


def test_replace_byzantine_replaces_only_the_first_workers_and_reencodes():
    vectors = list(honest_vectors(2, n=6))
    out = replace_byzantine(IPM(eps=1.0), vectors, 2, None, [0, 0, 1])
    expected = -np.mean(vectors[2:], axis=0)
    for index in range(2):
        np.testing.assert_allclose(out[index], expected, rtol=1e-12)
    for index in range(2, 6):
        assert out[index] is vectors[index]
    # A sign compressor's attacker sends signs.
    backend = InProcessBackend()
    backend.n_byzantine, backend.attack = 2, IPM(eps=1.0)
    backend.compressor, backend.aggregator = SignSGD(), get_aggregator("median")
    backend.restart_attack(0)
    signs = backend.attacked_vectors(vectors)
    np.testing.assert_array_equal(signs[0], np.where(expected >= 0, 1.0, -1.0))


@pytest.mark.filterwarnings("ignore:The fit predicts the training data worse")
def test_label_flip_trains_on_minus_y_or_a_map():
    y = np.array([1.0, -2.0, 3.0])
    np.testing.assert_array_equal(get_attack("label_flip").poison_labels(y), -y)
    np.testing.assert_array_equal(LabelFlip(target=np.abs).poison_labels(y), np.abs(y))
    with pytest.raises(ValueError, match="target must be None or a callable"):
        LabelFlip(target=3)
    with pytest.raises(ValueError, match="expected \\(3,\\) finite targets"):
        LabelFlip(target=lambda y: y[:2]).poison_labels(y)
    X, y = make_relu_regression(n_samples=300, n_features=5, noise=0.1, random_state=0)
    kw = dict(n_workers=3, batch_size=60, max_iter=1, tol=None, random_state=0,
              init="zeros", learning_rate=0.01, aggregation="median")
    flipped = ReLURegressor(n_byzantine=1, attack="label_flip", **kw).fit(X, y)
    by_hand = ReLURegressor(n_byzantine=0, **kw).fit(X, np.r_[-y[:100], y[100:]])
    np.testing.assert_array_equal(flipped.coef_, by_hand.coef_)


@pytest.mark.parametrize("make, match", [
    (lambda: ALIE(z=math.inf), "z must be a finite float or None"),
    (lambda: IPM(eps=None), "eps must be a finite float, got None"),
    (lambda: OptimalIPM(factors=[]), "factors must be a non-empty sequence"),
    (lambda: Mimic(worker=-1), "worker must be an integer >= 0"),
])
def test_bad_attack_parameters_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def small_fit(backend="inprocess", **params):
    X, y = make_relu_regression(n_samples=600, n_features=9, noise=0.1, random_state=2)
    kw = dict(n_workers=7, batch_size=140, max_iter=2, tol=None, random_state=5,
              n_byzantine=2, aggregation="geometric_median")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ReLURegressor(backend=backend, **{**kw, **params}).fit(X, y)


ATTACKS = ["alie", "ipm", "optimal_alie", "optimal_ipm", "mimic", "label_flip"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_gives_the_same_bits_on_inprocess_and_joblib(attack):
    reference = small_fit(attack=attack)
    with joblib.parallel_config(backend="threading"):
        est = small_fit("joblib", attack=attack)
    np.testing.assert_array_equal(est.coef_, reference.coef_)
    assert est.intercept_ == reference.intercept_
    assert est.comm_record_.bytes_sent == reference.comm_record_.bytes_sent
    honest = small_fit(n_byzantine=0)
    assert not np.array_equal(honest.coef_, reference.coef_)
    # The attack is a simulation: the same bytes as honest messages.
    assert est.comm_record_.bytes_sent == honest.comm_record_.bytes_sent


def test_an_omniscient_attack_replaces_the_decoded_vectors_of_a_step():
    X, y = make_relu_regression(n_samples=200, n_features=4, noise=0.1, random_state=0)
    seen = []

    class Spy(ALIE):
        def craft(self, own, honest, aggregate, rng, n_byzantine):
            seen.append((own.copy(), honest.copy()))
            return super().craft(own, honest, aggregate, rng, n_byzantine)

    backend = InProcessBackend()
    backend.start(X, y, None, n_workers=5, batch_size=50, compressor=Identity(),
                  aggregator=get_aggregator("median"), n_byzantine=2, attack=Spy(z=1.0))
    backend.reseed(3)
    params = np.zeros(4)
    messages = [w.gradient_message(params) for w in backend.workers]
    vectors = [Identity().decompress(m, 4) for m in messages]
    direction = backend.sum_decoded(messages, 4)
    honest = np.array(vectors[2:])
    crafted = honest.mean(axis=0) - honest.std(axis=0, ddof=1)
    expected = get_aggregator("median").aggregate([crafted, crafted] + vectors[2:],
                                                  Identity())
    np.testing.assert_allclose(direction, expected, rtol=1e-12)
    np.testing.assert_array_equal(seen[0][0], vectors[0])  # its own true vector
    np.testing.assert_array_equal(seen[1][1], honest)


def test_an_omniscient_attack_needs_vectors_decoded_one_by_one():
    with pytest.raises(ValueError, match="sums the vectors while encoded"):
        small_fit(attack="alie", solver="intsgd", aggregation="mean")


def test_the_optimal_search_leaves_the_rules_memory_as_it_was():
    backend = InProcessBackend()
    rule = get_aggregator("bgmd")
    backend.n_byzantine, backend.attack = 1, OptimalIPM(factors=[0.0, 1.0])
    backend.compressor, backend.aggregator = Identity(), rule
    backend.restart_attack(0)
    vectors = list(honest_vectors(3, n=5))
    before = copy.deepcopy(rule.__dict__)
    backend.attacked_vectors(vectors)
    assert rule.__dict__.keys() == before.keys()
    assert all(
        np.array_equal(rule.__dict__[k], before[k]) if isinstance(before[k], np.ndarray)
        else rule.__dict__[k] == before[k] for k in before
    )
