"""Sparse X (SciPy CSR, and CSC or COO converted once): every solver, every
backend, fit, partial_fit and predict, the spectral start and
learning_rate="auto", without a dense copy of X.

Two kinds of comparison:

- the sparse model against the dense model on the same data, within rounding:
  the two sum each gradient and each pass in different orders (a few ulps a
  step), and a stable step does not amplify such differences. A compressor's
  discrete choice (a sign, a QSGD level, the top k) changes only where a value
  lies within rounding of its threshold: about 1e-16 a draw in float64, over
  some 10**4 draws here. The observed differences after these fits are about
  1e-16 (float64) and 1e-7 (float32) of the largest coefficient; the
  tolerances are 1e-9 and 1e-4, and float32 is compared on exact gradients
  only (a float32 QSGD level within 1e-7 of its threshold is not rare enough);
- sparse fits against each other (backends, the compiled step loop against
  the step-by-step path, CSC against CSR): the same sums in the same order, so
  the same bits.
"""

import tracemalloc

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from test_backends import assert_same_fit

from sklearn_relu import DivergenceError, ReLURegressor, _gradient, _parallel, _steps
from sklearn_relu._diagnostics import column_moments
from sklearn_relu._sparse import take_rows
from sklearn_relu._worker import ShardWorker, worker_arguments
from sklearn_relu.backends import InProcessBackend
from sklearn_relu.compression import Identity, available_compressors

KERNEL = pytest.mark.skipif(
    _gradient.KERNEL != "c", reason="the C kernel (sklearn_relu._kernels) is not built"
)
TOLERANCE = {np.float64: 1e-9, np.float32: 1e-4}


def sparse_data(n=600, d=50, density=0.1, seed=0, dtype=np.float64, matrix=sp.csr_matrix):
    """A planted ReLU on sparse rows, with noise; canonical CSR (sorted
    indices), so that a round trip through CSC gives the same arrays."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", random_state=seed,
                  data_rvs=rng.standard_normal, dtype=dtype)
    X.sum_duplicates()
    X.sort_indices()
    y = np.maximum(X @ rng.standard_normal(d) + 0.1, 0) + 0.05 * rng.standard_normal(n)
    return matrix(X), y.astype(dtype)


def relu(backend="inprocess", **params):
    defaults = dict(n_workers=3, batch_size=60, max_iter=4, tol=None, random_state=0)
    return ReLURegressor(backend=backend, **{**defaults, **params})


def stepwise():
    """The in-process backend without its compiled loop: one step at a time."""
    backend = InProcessBackend()
    backend._fused_steps = False
    return backend


def assert_close_to(est, reference, dtype=np.float64):
    scale = float(np.abs(reference.coef_).max())
    assert_allclose(est.coef_, reference.coef_, rtol=0, atol=TOLERANCE[dtype] * scale)
    assert est.intercept_ == pytest.approx(reference.intercept_, abs=TOLERANCE[dtype] * scale)


SOLVERS = [pytest.param(dict(solver=name), id=name) for name in available_compressors()]
SOLVERS += [
    pytest.param(dict(solver="topk", k=5, error_feedback=True), id="topk-ef"),
    pytest.param(dict(solver="qsgd", bits=3, bucket_size=7), id="qsgd3-bucket7"),
]


# -- the sparse model is the dense model, within rounding --
@pytest.mark.parametrize("solver", SOLVERS)
def test_every_solver_fits_sparse_X_as_it_fits_the_same_dense_X(solver):
    X, y = sparse_data()
    dense = relu(**solver).fit(X.toarray(), y)
    est = relu(**solver).fit(X, y)
    assert_close_to(est, dense)
    assert est.learning_rate_ == pytest.approx(dense.learning_rate_, rel=1e-9)
    assert_allclose(est.predict(X), dense.predict(X.toarray()), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_float32_weights_and_no_intercept_follow_the_dense_fit(dtype, weighted, fit_intercept):
    X, y = sparse_data(dtype=dtype)
    weights = np.random.default_rng(1).uniform(0.5, 2, X.shape[0]) if weighted else None
    params = dict(fit_intercept=fit_intercept)
    dense = relu(**params).fit(X.toarray(), y, weights)
    est = relu(**params).fit(X, y, weights)
    assert est.coef_.dtype == dtype
    assert_close_to(est, dense, dtype)


def test_the_spectral_start_and_the_auto_step_are_the_dense_ones():
    X, y = sparse_data()
    starts = {}

    def record(kind):
        def callback(info):
            starts.setdefault(kind, np.array(info.params))
        return callback

    dense = relu(callback=record("dense"), max_iter=1).fit(X.toarray(), y)
    est = relu(callback=record("sparse"), max_iter=1).fit(X, y)
    assert_allclose(starts["sparse"], starts["dense"], rtol=1e-12, atol=1e-15)
    assert np.any(starts["sparse"])  # a spectral start, not zeros
    assert est.learning_rate_ == pytest.approx(dense.learning_rate_, rel=1e-9)


def test_partial_fit_on_sparse_chunks_follows_the_dense_one():
    X, y = sparse_data()
    dense, est = relu(), relu()
    for rows in (slice(0, 300), slice(300, 600)):
        dense.partial_fit(X[rows].toarray(), y[rows])
        est.partial_fit(X[rows], y[rows])
    assert_close_to(est, dense)
    assert est.t_ == dense.t_


def test_predict_takes_csr_csc_and_dense_rows_alike():
    X, y = sparse_data()
    est = relu().fit(X, y)
    expected = est.predict(X.toarray())
    for rows in (X, X.tocsc(), X.tocoo(), sp.csr_array(X)):
        assert_allclose(est.predict(rows), expected, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="features"):
        est.predict(sp.random(5, X.shape[1] + 1, density=0.2, format="csr"))


# -- sparse fits agree with each other to the last bit --
@pytest.mark.parametrize("matrix", [sp.csc_matrix, sp.coo_matrix, sp.csr_array])
def test_csc_coo_and_csr_arrays_are_converted_once_to_the_csr_model(matrix):
    X, y = sparse_data()
    reference = relu().fit(X, y)
    assert_same_fit(relu().fit(matrix(X), y), reference)


@KERNEL
@pytest.mark.parametrize("solver", [dict(solver="sgd"), dict(solver="qsgd", bits=4)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_workers", [1, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_compiled_loop_gives_the_step_by_step_model(
    fused_calls, solver, dtype, weighted, n_workers, fit_intercept
):
    X, y = sparse_data(dtype=dtype)
    weights = np.random.default_rng(1).uniform(0.5, 2, X.shape[0]) if weighted else None
    params = dict(n_workers=n_workers, fit_intercept=fit_intercept, **solver)
    fast = relu(backend=InProcessBackend(), **params).fit(X, y, weights)
    assert sum(fused_calls) == fast.t_  # every step ran in the compiled loop
    assert_same_fit(fast, relu(backend=stepwise(), **params).fit(X, y, weights))


@KERNEL
def test_an_epoch_longer_than_one_compiled_call_continues_across_calls(monkeypatch):
    monkeypatch.setattr(_steps, "MAX_STEPS_PER_CALL", 3)
    X, y = sparse_data()
    params = dict(batch_size=20, max_iter=2)
    assert_same_fit(relu(**params).fit(X, y), relu(backend=stepwise(), **params).fit(X, y))


@pytest.mark.parametrize("joblib_backend", ["threading", "loky"])
@pytest.mark.parametrize("solver", [
    dict(solver="sgd"), dict(solver="qsgd", bits=4), dict(solver="intsgd"),
    dict(solver="signsgd"), dict(solver="topk", k=5, error_feedback=True),
])
def test_joblib_gives_the_inprocess_sparse_model(joblib_backend, solver):
    if joblib_backend == "loky" and solver["solver"] != "qsgd":
        pytest.skip("loky's worker processes start slowly: one solver suffices")
    X, y = sparse_data()
    weights = np.random.default_rng(1).uniform(0.5, 2, X.shape[0])
    reference = relu(**solver).fit(X, y, weights)
    with joblib.parallel_config(backend=joblib_backend):
        est = relu("joblib", **solver).fit(X, y, weights)
    assert_same_fit(est, reference)


def test_early_stopping_and_an_ensemble_take_sparse_rows():
    X, y = sparse_data()
    params = dict(n_ensemble=2, early_stopping=True, max_iter=3, solver="qsgd")
    dense = relu(**params).fit(X.toarray(), y)
    est = relu(**params).fit(X, y)
    assert_close_to(est, dense)
    assert est.validation_scores_ == pytest.approx(dense.validation_scores_, rel=1e-9)


# -- X is never densified --
@pytest.fixture
def no_dense_copies(monkeypatch):
    """Every way SciPy makes a dense copy of a sparse matrix or array raises."""
    def refuse(*args, **kwargs):
        raise AssertionError("X was densified")

    for kind in (sp.csr_matrix, sp.csc_matrix, sp.csr_array, sp.csc_array, sp.coo_matrix):
        for name in ("toarray", "todense", "__array__"):
            monkeypatch.setattr(kind, name, refuse, raising=False)


@pytest.mark.parametrize("solver", ["sgd", "qsgd", "signsgd"])
def test_no_dense_copy_is_made_in_fit_partial_fit_or_predict(no_dense_copies, solver):
    X, y = sparse_data()
    est = relu(solver=solver, early_stopping=True).fit(X, y)
    est.partial_fit(X.tocsc(), y)
    est.predict(X)
    with joblib.parallel_config(backend="threading"):
        relu("joblib", solver=solver).fit(X, y)
    # The warning's check of the columns' scales, on the stored entries.
    worker = ShardWorker(**worker_arguments(X, y, None, index=0, n_workers=1,
                                            batch_size=10, compressor=Identity()))
    assert column_moments(worker).shape == (1 + 2 * X.shape[1],)


def test_column_moments_of_sparse_rows_are_the_dense_ones():
    X, y = sparse_data()
    args = dict(index=0, n_workers=1, batch_size=10, compressor=Identity())
    sparse = column_moments(ShardWorker(**worker_arguments(X, y, None, **args)))
    dense = column_moments(ShardWorker(**worker_arguments(X.toarray(), y, None, **args)))
    assert_allclose(sparse, dense, rtol=1e-12, atol=1e-12)


def test_a_fit_on_wide_sparse_rows_allocates_a_few_feature_vectors():
    # d = 2**18 columns: a dense copy of these 2000 rows would be 4 GB; the
    # fit's own vectors (the model, its gradient, the start's and the step's
    # statistics) are a few of 2 MB each.
    n, d, per_row = 2000, 2**18, 30
    rng = np.random.default_rng(0)
    # 30 hashed columns a row (sp.random is slow at this width).
    indices = np.sort(rng.integers(0, d, size=(n, per_row)), axis=1).ravel()
    X = sp.csr_matrix(
        (rng.standard_normal(n * per_row), indices, np.arange(0, n * per_row + 1, per_row)),
        shape=(n, d),
    )
    y = np.maximum(X @ rng.standard_normal(d), 0)
    tracemalloc.start()
    try:
        relu(n_workers=1, max_iter=2).fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 8 * d, f"{peak / (8 * d):.1f} feature vectors"


def test_a_shard_of_csr_rows_shares_the_entries_of_X():
    X, y = sparse_data()
    shard = take_rows(X, slice(100, 400))
    assert np.shares_memory(shard.data, X.data)
    assert np.shares_memory(shard.indices, X.indices)
    assert_array_equal(shard.toarray(), X[100:400].toarray())
    empty = take_rows(X, slice(5, 5))
    assert empty.shape == (0, X.shape[1]) and empty.nnz == 0


# -- the gradient on CSR rows --
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(
    "gradient", [_gradient.batch_gradient, _gradient.batch_gradient_numpy]
)
def test_sparse_gradient_matches_the_reference(dtype, index_dtype, weighted, gradient):
    X, y = sparse_data(n=80, d=30, density=0.3, dtype=dtype)
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    rng = np.random.default_rng(2)
    weights = rng.uniform(0.5, 2, 80).astype(dtype) if weighted else None
    params = rng.standard_normal(31)
    rows = rng.integers(0, 80, 50)
    got = gradient(X, y, weights, params, rows, 1 / 50)
    want = _gradient.batch_gradient_reference(X.toarray(), y, weights, params, rows, 1 / 50)
    assert got[0].dtype == dtype
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    assert_allclose(got[0], want[0], rtol=tolerance, atol=tolerance)
    assert got[1] == pytest.approx(want[1], rel=tolerance)
    assert got[2] == pytest.approx(want[2], rel=tolerance)


@KERNEL
def test_the_sparse_kernel_adds_rows_in_one_fixed_order():
    X, y = sparse_data(n=80, d=30, density=0.3)
    rng = np.random.default_rng(3)
    params, rows = rng.standard_normal(31), rng.integers(0, 80, 200)
    first = _gradient.batch_gradient(X, y, None, params, rows, 0.01, n_threads=1)
    again = _gradient.batch_gradient(X, y, None, params, rng.permutation(rows), 0.01,
                                     n_threads=2)
    assert_array_equal(first[0], again[0])
    assert first[1:] == again[1:]


@pytest.mark.parametrize(
    "gradient", [_gradient.batch_gradient, _gradient.batch_gradient_numpy]
)
def test_an_empty_batch_of_sparse_rows_gives_a_zero_gradient(gradient):
    X, y = sparse_data(n=20, d=5)
    result = gradient(X, y, None, np.ones(6), np.array([], dtype=np.intp), 1.0)
    assert_array_equal(result[0], np.zeros(6))
    assert result[1:] == (0.0, 0.0)


def test_sparse_rows_out_of_range_are_an_error():
    X, y = sparse_data(n=20, d=5)
    with pytest.raises(IndexError, match="batch rows"):
        _gradient.batch_gradient(X, y, None, np.ones(6), np.array([0, 20]), 1.0)


@KERNEL
def test_the_kernel_refuses_csr_arrays_that_do_not_fit():
    X, y = sparse_data(n=20, d=5)
    out = np.empty(5)
    bad = X.copy()
    bad.indptr = bad.indptr[:-1]
    with pytest.raises(ValueError, match="row offsets"):
        _parallel._kernels.csr_gradient_part(bad, y, None, np.ones(5), 0.0,
                                             np.array([0]), 1.0, out)
    mixed = X.copy()
    mixed.indices = mixed.indices.astype(np.int64)
    with pytest.raises(ValueError, match="indptr"):
        _parallel._kernels.csr_gradient_part(mixed, y, None, np.ones(5), 0.0,
                                             np.array([0]), 1.0, out)


def test_invalid_sparse_structure_is_a_clear_error():
    X, y = sparse_data(n=20, d=5)
    X.indices[0] = 7  # a column beyond the 5
    with pytest.raises(ValueError, match="not a valid sparse matrix"):
        relu(n_workers=1, batch_size=5).fit(X, y)


def test_without_the_kernel_sparse_rows_take_scipy(monkeypatch):
    X, y = sparse_data()
    reference = relu().fit(X, y)
    monkeypatch.setattr(_parallel, "_kernels", None)
    assert_close_to(relu().fit(X, y), reference)


@pytest.mark.parametrize("fused", [True, False])
def test_a_diverging_step_on_sparse_rows_raises(fused):
    X, y = sparse_data()
    backend = InProcessBackend()
    backend._fused_steps = fused
    with pytest.raises(DivergenceError):
        relu(backend=backend, n_workers=1, learning_rate=1e6, max_iter=5).fit(X, y * 1e3)


def test_a_checkpointed_sparse_fit_resumes_to_the_same_bits(tmp_path):
    X, y = sparse_data()
    path = tmp_path / "fit.ckpt"
    params = dict(n_workers=2, max_iter=6)
    reference = relu(**params).fit(X, y)

    class Stop(Exception):
        pass

    def stop(info):
        if info.step == 35:
            raise Stop

    with pytest.raises(Stop):
        relu(checkpoint=path, callback=stop, **params).fit(X, y)
    assert path.exists()
    other = X.copy()
    other.data[0] += 1  # the fingerprint reads the stored entries
    with pytest.raises(ValueError, match="other data"):
        relu(checkpoint=path, **params).fit(other, y)
    assert_same_fit(relu(checkpoint=path, **params).fit(X, y), reference)
