"""The fast paths agree with the plain ones, and fitting neither copies nor upcasts X."""

import os
import tracemalloc

import numpy as np
import pytest

from sklearn_relu import ReLURegressor, _gradient, _parallel, make_relu_regression
from sklearn_relu._gradient import (
    batch_gradient,
    batch_gradient_numpy,
    batch_gradient_reference,
)
from sklearn_relu.backends import InProcessBackend


def _problem(n=300, d=40, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = np.maximum(X @ rng.standard_normal(d), 0).astype(dtype)
    return X, y, rng


def _relative(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


# Both fast paths, whichever batch_gradient uses: the NumPy one must stay
# tested where the C kernel is built.
FAST = [
    pytest.param(batch_gradient, id=f"batch_gradient[{_gradient.KERNEL}]"),
    pytest.param(batch_gradient_numpy, id="numpy"),
]

needs_kernel = pytest.mark.skipif(
    _gradient.KERNEL != "c", reason="the C kernel (sklearn_relu._kernels) is not built"
)


def test_kernel_is_built_where_required():
    # CI sets SKLEARN_RELU_REQUIRE_KERNEL=1: there a failed build must fail a
    # test rather than leave the kernel tests skipped.
    import os

    if os.environ.get("SKLEARN_RELU_REQUIRE_KERNEL") == "1":
        assert _gradient.KERNEL == "c"
    assert _gradient.KERNEL in ("c", "numpy")


@pytest.fixture
def many_blocks(monkeypatch):
    """Force tiny blocks and the threaded split even on small problems."""
    monkeypatch.setattr(_parallel, "BLOCK_BYTES", 7 * 40 * 8)
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_BYTES", 0)


@pytest.mark.parametrize("gradient", FAST)
@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fast_gradient_matches_reference_float64(
    many_blocks, gradient, fit_intercept, weighted, n_threads
):
    X, y, rng = _problem()
    params = 0.1 * rng.standard_normal(X.shape[1] + fit_intercept)
    weights = rng.random(X.shape[0]) if weighted else None
    rows = rng.integers(0, X.shape[0], 97)  # repeats, several blocks, odd split
    rows[:5] = rows[5]  # a row drawn several times
    fast = gradient(X, y, weights, params, rows, 1 / 97, n_threads=n_threads)
    slow = batch_gradient_reference(X, y, weights, params, rows, 1 / 97)
    assert fast[0].dtype == np.float64
    assert _relative(fast[0], slow[0]) <= 1e-12
    assert fast[1] == pytest.approx(slow[1], rel=1e-12)
    assert fast[2] == pytest.approx(slow[2], rel=1e-12)


@pytest.mark.parametrize("gradient", FAST)
def test_fast_gradient_takes_half_derivative_at_zero(many_blocks, gradient):
    # Rows of zeros with no intercept sit exactly at z = 0, where the
    # generalized derivative is 1/2.
    X, y, rng = _problem()
    X[:50] = 0.0
    y[:50] = 1.0
    params = rng.standard_normal(X.shape[1])
    rows = np.arange(0, 100)
    fast = gradient(X, y, None, params, rows, 0.01)
    slow = batch_gradient_reference(X, y, None, params, rows, 0.01)
    assert _relative(fast[0], slow[0]) <= 1e-12
    at_zero = gradient(X, y, None, params, np.arange(50), 1.0)
    # Every row is zero: the gradient is zero but the loss is sum(y^2)/2.
    assert np.all(at_zero[0] == 0) and at_zero[1] == 25.0


@pytest.mark.parametrize("gradient", FAST)
def test_fast_gradient_threads_agree_with_one_thread(many_blocks, gradient):
    X, y, rng = _problem(n=500, d=40)
    params = 0.1 * rng.standard_normal(40)
    rows = rng.integers(0, 500, 400)
    one = gradient(X, y, None, params, rows, 1.0, n_threads=1)
    two = gradient(X, y, None, params, rows, 1.0, n_threads=2)
    assert _relative(two[0], one[0]) <= 1e-12


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_gives_the_same_bits_on_one_thread_or_two(many_blocks, dtype):
    # Backends running one thread per worker must match in-process bit for bit.
    X, y, rng = _problem(n=500, d=43, dtype=dtype)
    params = (0.1 * rng.standard_normal(44)).astype(dtype)
    rows = rng.integers(0, 500, 301)
    one = batch_gradient(X, y, None, params, rows, 1 / 301, n_threads=1)
    two = batch_gradient(X, y, None, params, rows, 1 / 301, n_threads=2)
    np.testing.assert_array_equal(one[0], two[0])
    assert one[1:] == two[1:]


@needs_kernel
@pytest.mark.parametrize("n_features", [1, 3, 8, 9, 17, 41])
@pytest.mark.parametrize("n_rows", [1, 3, 4, 5, 9, 64])
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_matches_reference_at_every_remainder(n_features, n_rows, weighted):
    # Feature counts around the vector widths (4 doubles, 8 floats) and batch
    # sizes around the group of 4 rows: every tail loop is exercised.
    for dtype, tolerance in ((np.float64, 1e-12), (np.float32, 1e-4)):
        X, y, rng = _problem(n=50, d=n_features, dtype=dtype, seed=n_rows)
        params = (0.3 * rng.standard_normal(n_features + 1)).astype(dtype)
        weights = rng.random(50).astype(dtype) if weighted else None
        rows = rng.integers(0, 50, n_rows)
        fast = batch_gradient(X, y, weights, params, rows, 1 / n_rows)
        slow = batch_gradient_reference(X, y, weights, params, rows, 1 / n_rows)
        assert fast[0].dtype == dtype
        assert _relative(fast[0].astype(float), slow[0].astype(float)) <= tolerance
        assert fast[1] == pytest.approx(slow[1], rel=tolerance)
        assert fast[2] == pytest.approx(slow[2], rel=tolerance)


@needs_kernel
def test_kernel_reads_strided_rows_in_place():
    X, y, rng = _problem(n=600, d=40)
    X_view, y_view = X[::3], y[::3]  # rows 3 apart: a view, not a copy
    params = 0.1 * rng.standard_normal(41)
    rows = rng.integers(0, 200, 50)
    fast = batch_gradient(X_view, y_view, None, params, rows, 1 / 50)
    slow = batch_gradient_reference(X_view, y_view, None, params, rows, 1 / 50)
    assert _relative(fast[0], slow[0]) <= 1e-12


def test_column_strided_X_takes_the_numpy_path():
    X, y, rng = _problem()
    X_fortran = np.asfortranarray(X)
    params = 0.1 * rng.standard_normal(41)
    rows = rng.integers(0, 300, 50)
    fast = batch_gradient(X_fortran, y, None, params, rows, 1 / 50)
    slow = batch_gradient_reference(X, y, None, params, rows, 1 / 50)
    assert _relative(fast[0], slow[0]) <= 1e-12


@pytest.mark.parametrize("gradient", FAST)
def test_nan_parameters_give_a_non_finite_gradient(gradient):
    # The worker detects divergence from the gradient; a NaN must not vanish
    # into the zero derivative of a negative z.
    X, y, rng = _problem()
    params = np.zeros(40)
    params[3] = np.nan
    result = gradient(X, y, None, params, rng.integers(0, 300, 20), 1.0)
    assert not np.all(np.isfinite(result[0]))
    assert np.isnan(result[1])


@needs_kernel
def test_kernel_rejects_mismatched_arrays():
    from sklearn_relu import _kernels

    X, y, _ = _problem()
    rows, out, coef = np.arange(5), np.empty(40), np.zeros(40)
    with pytest.raises(ValueError, match="y: expected"):
        _kernels.gradient_part(X, y[:10], None, coef, 0.0, rows, 1.0, out)
    with pytest.raises(ValueError, match="coef: expected"):
        _kernels.gradient_part(X, y, None, coef.astype(np.float32), 0.0, rows, 1.0, out)
    with pytest.raises(ValueError, match="rows: expected"):
        _kernels.gradient_part(X, y, None, coef, 0.0, rows.astype(float), 1.0, out)
    with pytest.raises(ValueError, match="X: expected"):
        _kernels.gradient_part(X.T, y, None, coef, 0.0, rows, 1.0, out)


@pytest.mark.parametrize("gradient", FAST)
def test_fast_gradient_stays_float32(many_blocks, gradient):
    X, y, rng = _problem(dtype=np.float32)
    params = (0.1 * rng.standard_normal(X.shape[1] + 1)).astype(np.float32)
    rows = rng.integers(0, X.shape[0], 64)
    fast = gradient(X, y, None, params, rows, 1 / 64)
    slow = batch_gradient_reference(X, y, None, params, rows, 1 / 64)
    assert fast[0].dtype == np.float32
    assert _relative(fast[0].astype(np.float64), slow[0].astype(np.float64)) < 1e-5


@pytest.mark.parametrize("fast", FAST)
def test_empty_batch_gives_zero_gradient(fast):
    X, y, _ = _problem()
    gradient, loss, weight = fast(
        X, y, None, np.zeros(40), np.array([], dtype=int), 1.0
    )
    assert np.all(gradient == 0) and loss == 0 and weight == 0


class _ShardSpy(InProcessBackend):
    """Keeps the workers' shards after the fit, to check where they live."""

    def _start(self, X, y, sample_weight, **kwargs):
        super()._start(X, y, sample_weight, **kwargs)
        self.shards = [(w.X, w.y) for w in self.workers]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("solver", ["sgd", "qsgd"])
def test_fit_uses_views_of_X_and_keeps_its_dtype(dtype, solver):
    X, y = make_relu_regression(n_samples=400, n_features=10, random_state=0)
    X, y = X.astype(dtype), y.astype(dtype)
    spy = _ShardSpy()
    est = ReLURegressor(
        solver=solver, n_workers=2, backend=spy, max_iter=3, tol=None,
        random_state=0,
    ).fit(X, y)
    assert len(spy.shards) == 2
    for shard_X, shard_y in spy.shards:
        assert np.shares_memory(shard_X, X), "a worker got a copy of X"
        assert np.shares_memory(shard_y, y)
        assert shard_X.dtype == dtype
    assert est.coef_.dtype == dtype
    assert est.predict(X[:3]).dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_allocates_far_less_than_X(dtype):
    # float32 too: a float64 parameter vector in a product with X would make
    # NumPy convert X to a float64 copy, twice its size.
    X, y = make_relu_regression(n_samples=4000, n_features=100, random_state=0)
    X, y = X.astype(dtype), y.astype(dtype)
    est = ReLURegressor(batch_size=200, max_iter=2, tol=None, random_state=0)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        est.fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A copy of X would add 1.0; the issue allows at most 0.25 of X on top.
    assert (peak - before) <= 0.25 * X.nbytes


def test_tracemalloc_sees_numpy_copies():
    # Guards the test above: it would pass vacuously if NumPy buffers were
    # invisible to tracemalloc.
    X = np.ones((1000, 100))
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        copy = X.copy()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before >= copy.nbytes


def test_threaded_gradient_restores_the_blas_thread_count(many_blocks):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info()]
    X, y, rng = _problem(n=500, d=40)
    batch_gradient_numpy(X, y, None, np.zeros(40), rng.integers(0, 500, 300), 1.0,
                   n_threads=2)
    assert [i["num_threads"] for i in threadpoolctl.threadpool_info()] == before


def _blas_threads(threadpoolctl):
    return [i["num_threads"] for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "blas"]


@pytest.fixture
def threadpoolctl():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not _blas_threads(threadpoolctl):
        pytest.skip("threadpoolctl sees no BLAS library")
    return threadpoolctl


@pytest.mark.parametrize("cores, expected", [(2, 1), (3, 2)])
def test_a_fit_leaves_blas_the_cores_its_step_threads_do_not_use(
    monkeypatch, threadpoolctl, cores, expected
):
    # BLAS's idle workers spin after each threaded call; during a fit they
    # would take the cores of the step threads (see _parallel.blas_beside_steps).
    before = _blas_threads(threadpoolctl)
    monkeypatch.setattr(_parallel, "_cores", lambda: cores)
    monkeypatch.setattr(_parallel, "N_THREADS", 2)
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_BYTES", 0)  # a batch on 2 threads
    seen = []

    def record(info):
        seen.append(_blas_threads(threadpoolctl))

    X, y, _ = _problem()
    with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):
        outer = _blas_threads(threadpoolctl)  # 3, or 1 for a one-thread BLAS
        ReLURegressor(max_iter=2, tol=None, callback=record).fit(X, y)
        assert seen
        assert all(threads == [min(expected, o) for o in outer] for threads in seen)
        assert _blas_threads(threadpoolctl) == outer  # restored after the fit
        with pytest.raises(ValueError):
            ReLURegressor(learning_rate=-1.0).fit(X, y)
        assert _blas_threads(threadpoolctl) == outer  # and after a failed one
    assert _blas_threads(threadpoolctl) == before


@pytest.mark.parametrize("cores", [2, 3])
def test_steps_on_one_thread_leave_blas_every_core(monkeypatch, threadpoolctl, cores):
    # A batch too small to split runs on the calling thread alone: BLAS keeps
    # the cores the process may use (a limit there only slowed its passes).
    monkeypatch.setattr(_parallel, "_cores", lambda: cores)
    monkeypatch.setattr(_parallel, "N_THREADS", 2)
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_BYTES", 1 << 60)
    seen = []
    X, y, _ = _problem()
    with threadpoolctl.threadpool_limits(limits=4, user_api="blas"):
        outer = _blas_threads(threadpoolctl)
        ReLURegressor(max_iter=1, tol=None,
                      callback=lambda info: seen.append(_blas_threads(threadpoolctl))
                      ).fit(X, y)
    assert seen and all(threads == [min(cores, o) for o in outer] for threads in seen)


def test_a_fit_never_raises_the_blas_thread_count(monkeypatch, threadpoolctl):
    monkeypatch.setattr(_parallel, "_cores", lambda: 64)
    seen = []
    X, y, _ = _problem()
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        ReLURegressor(max_iter=1, tol=None,
                      callback=lambda info: seen.append(_blas_threads(threadpoolctl))
                      ).fit(X, y)
    assert seen and all(set(threads) == {1} for threads in seen)


@pytest.mark.parametrize("first_out", ["outer", "inner"])
def test_blas_limits_left_in_any_order_restore_the_setting(threadpoolctl, first_out):
    # A fit's limit and a threaded gradient's (another thread) overlap in
    # either order; the smallest limit in force holds, and when both have
    # ended every library has its setting back.
    outer, inner = _parallel._BLASLimit(lambda: 2), _parallel._BLASLimit(lambda: 1)
    with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):
        setting = _blas_threads(threadpoolctl)
        outer.__enter__()
        assert _blas_threads(threadpoolctl) == [min(2, t) for t in setting]
        inner.__enter__()
        assert set(_blas_threads(threadpoolctl)) == {1}
        first, second = (outer, inner) if first_out == "outer" else (inner, outer)
        first.__exit__(None, None, None)
        remaining = 1 if first_out == "outer" else 2
        assert _blas_threads(threadpoolctl) == [min(remaining, t) for t in setting]
        second.__exit__(None, None, None)
        assert _blas_threads(threadpoolctl) == setting


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_inside_a_blas_limit_leaves_it_cleanly(threadpoolctl):
    limit = _parallel._BLASLimit(lambda: 1)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        setting = _blas_threads(threadpoolctl)
        with limit:
            pid = os.fork()
            if pid == 0:  # the child: leaving must neither raise nor hang
                code = 1
                try:
                    limit.__exit__(None, None, None)
                    with limit:
                        code = 0 if set(_blas_threads(threadpoolctl)) == {1} else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert _blas_threads(threadpoolctl) == setting


def _bit_string_pack(levels, bits):
    """The packed format spelled out: sign-magnitude fields, MSB first, in order."""
    from sklearn_relu.compression._bitpack import _to_fields

    stream = "".join(format(int(f), f"0{bits}b") for f in _to_fields(levels, bits))
    stream += "0" * (-len(stream) % 8)
    return bytes(int(stream[i : i + 8], 2) for i in range(0, len(stream), 8))


@pytest.mark.parametrize("bits", list(range(2, 16)))
@pytest.mark.parametrize("n_values", [0, 1, 7, 8, 9, 65])
def test_fast_bit_packing_matches_the_bit_string(bits, n_values):
    from sklearn_relu.compression._bitpack import pack_signed, unpack_signed

    s = 2 ** (bits - 1) - 1
    levels = np.random.default_rng(bits * 100 + n_values).integers(-s, s + 1, n_values)
    packed = pack_signed(levels, bits)
    assert packed == _bit_string_pack(levels, bits)
    np.testing.assert_array_equal(unpack_signed(packed, n_values, bits), levels)


@pytest.mark.parametrize("gradient", FAST)
@pytest.mark.parametrize("bad_row", [-1, 300])
def test_rows_out_of_range_are_an_error_not_clipped(gradient, bad_row):
    X, y, _ = _problem()
    with pytest.raises(IndexError, match="batch rows must lie in"):
        gradient(X, y, None, np.zeros(40), np.array([0, bad_row]), 1.0)
