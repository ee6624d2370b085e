"""Pre-aggregation (NNM, bucketing) against plain NumPy references written from
the papers, its composition by name with every robust rule, and the same bits
on every backend."""

import joblib
import numpy as np
import pytest

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.aggregation import (
    NNM,
    Bucketing,
    GeometricMedian,
    Krum,
    PreAggregated,
    available_pre_aggregators,
    get_aggregator,
)
from sklearn_relu.compression import Identity

ROBUST = ["geometric_median", "bgmd", "median", "trimmed_mean", "krum", "multi_krum",
          "centered_clip"]


def nnm_reference(points, f):
    """Allouah et al. 2023, Algorithm 1: each vector is replaced by the average
    of its n - f nearest neighbours, itself included."""
    n = len(points)
    out = []
    for i in range(n):
        distances = [float(np.sum((points[i] - points[j]) ** 2)) for j in range(n)]
        nearest = sorted(range(n), key=lambda j: (distances[j], j))[: n - f]
        out.append(sum(points[j] for j in sorted(nearest)) / (n - f))
    return np.array(out)


def bucketing_reference(points, s, order):
    """Karimireddy et al. 2022, Algorithm 1: the vectors in ``order``, averaged
    ``s`` at a time."""
    n = len(points)
    return np.array([
        sum(points[order[j]] for j in range(k, min(k + s, n))) / (min(k + s, n) - k)
        for k in range(0, n, s)
    ])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("f", [0, 1, 3])
def test_nnm_equals_its_reference(seed, f):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(9, 7))
    points[:f] *= 30
    got = NNM(n_byzantine=f).transform(points, step=0)
    np.testing.assert_allclose(got, nnm_reference(points, f), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [7, 8, 10])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_bucketing_equals_its_reference_with_the_same_shuffle(n, s):
    points = np.random.default_rng(n).normal(size=(n, 5))
    bucketing = Bucketing(s=s, random_state=4)
    for step in range(3):
        order = np.random.default_rng([4, step]).permutation(n)
        np.testing.assert_allclose(
            bucketing.transform(points, step), bucketing_reference(points, s, order),
            rtol=1e-12, atol=1e-12,
        )


@pytest.mark.parametrize("rule", ROBUST)
@pytest.mark.parametrize("pre", ["nnm", "bucketing"])
def test_a_pre_aggregator_composes_with_every_robust_rule_by_name(pre, rule):
    aggregator = get_aggregator(f"{pre}+{rule}")
    assert isinstance(aggregator, PreAggregated)
    assert aggregator.rule == get_aggregator(rule)
    points = np.random.default_rng(0).normal(size=(11, 4))
    aggregator.check_byzantine(1, 11)
    inner = get_aggregator(rule)
    inner.check_byzantine(1, aggregator.pre.n_points(11))
    transformed = aggregator.pre.transform(points, step=0)
    got = aggregator.aggregate(list(points), Identity())
    np.testing.assert_array_equal(got, 11 * inner.center(transformed))


def test_pre_aggregation_by_name_and_its_errors():
    assert available_pre_aggregators() == ["bucketing", "nnm"]
    assert get_aggregator("nnm+bucketing+krum") == PreAggregated(
        NNM(), PreAggregated(Bucketing(), Krum())
    )
    with pytest.raises(ValueError, match=r"pre-aggregator \(before '\+'.*got 'nope'"):
        get_aggregator("nope+krum")
    with pytest.raises(ValueError, match="aggregation must be one of"):
        get_aggregator("nnm+nope")
    with pytest.raises(ValueError, match="goes before a robust rule"):
        get_aggregator("nnm+mean")
    with pytest.raises(ValueError, match="s must be an integer >= 1"):
        Bucketing(s=0)
    with pytest.raises(ValueError, match="random_state must be an integer"):
        Bucketing(random_state=None)
    with pytest.raises(ValueError, match="n_byzantine must be an integer"):
        NNM(n_byzantine=-1)
    # Each Byzantine worker can spoil one bucket: 5 buckets of 2 withstand
    # what the geometric median withstands of 5 points, 2.
    bucketed = get_aggregator("bucketing+geometric_median")
    assert bucketed.max_byzantine(10) == 2
    with pytest.raises(ValueError, match="withstands at most 2"):
        bucketed.check_byzantine(3, 10)
    get_aggregator("nnm+geometric_median").check_byzantine(4, 10)


def test_nnm_takes_n_byzantine_from_the_fit_and_bucketing_state_resumes():
    points = np.random.default_rng(1).normal(size=(7, 3))
    nnm = get_aggregator("nnm+median")
    nnm.check_byzantine(2, 7)
    np.testing.assert_array_equal(
        nnm.pre.transform(points, 0), nnm_reference(points, 2)
    )
    bucketed = PreAggregated(Bucketing(s=2), GeometricMedian())
    first = [bucketed.aggregate(list(points), Identity()) for _ in range(3)]
    state = bucketed.get_state()
    later = bucketed.aggregate(list(points), Identity())
    bucketed.reset()
    again = [bucketed.aggregate(list(points), Identity()) for _ in range(3)]
    np.testing.assert_array_equal(np.array(first), np.array(again))
    resumed = PreAggregated(Bucketing(s=2), GeometricMedian())
    resumed.set_state(state)
    np.testing.assert_array_equal(resumed.aggregate(list(points), Identity()), later)


def fit(backend, **params):
    X, y = make_relu_regression(n_samples=600, n_features=9, noise=0.1, random_state=2)
    kw = dict(n_workers=10, batch_size=200, max_iter=2, tol=None, random_state=5,
              n_byzantine=1, attack="gaussian")
    return ReLURegressor(backend=backend, **{**kw, **params}).fit(X, y)


@pytest.mark.parametrize(
    "aggregation", ["nnm+geometric_median", "bucketing+krum", "nnm+bgmd"]
)
def test_a_fit_with_pre_aggregation_is_the_same_on_inprocess_and_joblib(aggregation):
    reference = fit("inprocess", aggregation=aggregation)
    with joblib.parallel_config(backend="threading"):
        est = fit("joblib", aggregation=aggregation)
    np.testing.assert_array_equal(est.coef_, reference.coef_)
    assert est.intercept_ == reference.intercept_
    plain = fit("inprocess", aggregation=aggregation.split("+")[1])
    assert not np.array_equal(plain.coef_, reference.coef_)
