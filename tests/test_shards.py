"""Heterogeneous shards: ``ReLURegressor(shards=...)`` and
:class:`DirichletShards` deal a partition of the rows, ``alpha=inf`` gives
every worker the same spread of targets, small ``alpha`` does not, and a fit
is the same on every backend."""

import joblib
import numpy as np
import pytest

from sklearn_relu import DirichletShards, ReLURegressor, make_relu_regression
from sklearn_relu._shards import check_partition
from sklearn_relu.backends import InProcessBackend, MPIBackend
from sklearn_relu.compression import Identity


@pytest.mark.parametrize("alpha", [0.05, 0.1, 1.0, 10.0, float("inf")])
@pytest.mark.parametrize("n_rows, n_workers", [(1000, 10), (37, 5), (12, 12)])
def test_the_shards_are_a_partition_into_non_empty_parts(alpha, n_rows, n_workers):
    y = np.random.default_rng(0).normal(size=n_rows)
    shards = DirichletShards(alpha=alpha, random_state=1).split(None, y, n_workers)
    assert len(shards) == n_workers
    assert all(len(rows) > 0 for rows in shards)
    every = np.concatenate(shards)
    assert np.array_equal(np.sort(every), np.arange(n_rows))
    assert all(np.array_equal(rows, np.sort(rows)) for rows in shards)


def bin_shares(shards, y, n_bins=10):
    """Each worker's share of its rows in each target-quantile bin."""
    edges = np.quantile(y, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.array([
        np.bincount(np.searchsorted(edges, y[rows]), minlength=n_bins) / len(rows)
        for rows in shards
    ])


def test_alpha_inf_gives_every_worker_the_same_spread_of_targets():
    y = np.random.default_rng(0).normal(size=5000)
    shards = DirichletShards(alpha=float("inf")).split(None, y, 10)
    assert [len(rows) for rows in shards] == [500] * 10
    # Deterministic given the seed: exactly 50 rows of each bin a worker.
    np.testing.assert_allclose(bin_shares(shards, y), 0.1, atol=1e-12)


def test_small_alpha_concentrates_each_worker_on_few_bins():
    y = np.random.default_rng(0).normal(size=5000)
    spread = {
        alpha: np.abs(bin_shares(DirichletShards(alpha=alpha).split(None, y, 10), y)
                      - 0.1).sum(axis=1).mean()
        for alpha in (100.0, 1.0, 0.1)
    }
    # Deterministic (seeded): the distance of a worker's bin shares from the
    # whole set's grows as alpha falls.
    assert spread[100.0] < 0.2 < spread[1.0] < spread[0.1]


def test_shards_by_a_feature_column():
    X = np.random.default_rng(0).normal(size=(400, 3))
    shards = DirichletShards(alpha=0.1, by=2).split(X, np.zeros(400), 4)
    check_partition(shards, 400, 4)
    with pytest.raises(ValueError, match="bins column 3, but X has 3 columns"):
        DirichletShards(by=3).split(X, np.zeros(400), 4)


@pytest.mark.parametrize("make, match", [
    (lambda: DirichletShards(alpha=0), "alpha must be a float > 0"),
    (lambda: DirichletShards(alpha=float("nan")), "alpha must be a float > 0"),
    (lambda: DirichletShards(n_bins=0), "n_bins must be an integer >= 1"),
    (lambda: DirichletShards(by="x"), "by must be 'target' or a column index"),
])
def test_bad_splitter_parameters_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_check_partition_rejects_what_is_not_a_partition():
    with pytest.raises(ValueError, match="gave 1 shards for 2 workers"):
        check_partition([[0, 1]], 2, 2)
    with pytest.raises(ValueError, match="gave a worker no rows"):
        check_partition([[0, 1], []], 2, 2)
    with pytest.raises(ValueError, match="exactly one worker"):
        check_partition([[0, 1], [1]], 3, 2)


def fit(backend="inprocess", **params):
    X, y = make_relu_regression(n_samples=800, n_features=9, noise=0.5, random_state=2)
    kw = dict(n_workers=5, batch_size=100, max_iter=3, tol=None, random_state=5)
    return ReLURegressor(backend=backend, **{**kw, **params}).fit(X, y)


@pytest.mark.parametrize("params", [
    dict(),
    dict(aggregation="geometric_median", n_byzantine=1, attack="alie"),
    dict(solver="qsgd", bits=4),
])
def test_a_fit_with_shards_is_the_same_on_inprocess_and_joblib(params):
    shards = DirichletShards(alpha=0.5, random_state=3)
    reference = fit(shards=shards, **params)
    with joblib.parallel_config(backend="threading"):
        est = fit("joblib", shards=shards, **params)
    np.testing.assert_array_equal(est.coef_, reference.coef_)
    assert est.intercept_ == reference.intercept_
    assert not np.array_equal(fit(**params).coef_, reference.coef_)


def test_no_shards_is_todays_contiguous_blocks_and_workers_hold_the_dealt_rows():
    X, y = make_relu_regression(n_samples=100, n_features=3, random_state=0)
    backend = InProcessBackend()
    backend.start(X, y, None, n_workers=3, batch_size=30, compressor=Identity())
    np.testing.assert_array_equal(backend.workers[1].X, X[34:67])
    shards = DirichletShards(alpha=0.3)
    backend.start(X, y, None, n_workers=3, batch_size=30, compressor=Identity(),
                  shards=shards)
    for worker, rows in zip(backend.workers, shards.split(X, y, 3)):
        np.testing.assert_array_equal(worker.X, X[rows])
        np.testing.assert_array_equal(worker.y, y[rows])


def test_the_shards_parameter_is_checked_and_mpi_refuses_it():
    with pytest.raises(ValueError, match="shards must be None or a splitter"):
        fit(shards=3)
    pytest.importorskip("mpi4py")
    with pytest.raises(ValueError, match="under MPI each rank's shard is its own"):
        fit(MPIBackend(), n_workers=None, shards=DirichletShards())
