"""Run under mpiexec: the MPI backend gives the in-process model, on every rank.

Assertions hold for any number of ranks K: every rank fits with K workers, and
compares with the in-process fit on the same data with K workers.
"""

import sys
import tracemalloc

import numpy as np
from mpi4py import MPI
from sklearn.base import clone

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.backends import InProcessBackend, MPIBackend

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
X, y = make_relu_regression(n_samples=240, n_features=12, noise=0.1, random_state=1)


def fit(backend, **params):
    kw = dict(n_workers=size, batch_size=24, max_iter=4, tol=None, random_state=3)
    return ReLURegressor(backend=backend, **{**kw, **params})


for solver in ("sgd", "qsgd"):
    reference = fit("inprocess", solver=solver, bits=4).fit(X, y)
    # The in-process fit runs its epochs in the compiled loop; the
    # step-by-step path gives the same model, and so must MPI.
    stepwise = InProcessBackend()
    stepwise._fused_steps = False
    np.testing.assert_array_equal(
        fit(stepwise, solver=solver, bits=4).fit(X, y).coef_, reference.coef_
    )
    for topology in ("allgather", "master-worker"):
        est = fit(MPIBackend(topology=topology), solver=solver, bits=4).fit(X, y)
        np.testing.assert_array_equal(est.coef_, reference.coef_)
        assert est.intercept_ == reference.intercept_
        assert est.t_ == reference.t_
        got, want = est.comm_record_, reference.comm_record_
        assert (got.n_messages, got.bytes_sent, got.float64_bytes) == (
            want.n_messages,
            want.bytes_sent,
            want.float64_bytes,
        ), (got, want)
        if topology == "master-worker" and size > 1:
            assert got.control_bytes > 0

# Sample weights, early stopping and an ensemble go through the same seam.
sample_weight = np.linspace(0.5, 2.0, X.shape[0])
params = dict(solver="qsgd", n_ensemble=3, early_stopping=True, max_iter=3)
reference = fit("inprocess", **params).fit(X, y, sample_weight)
est = fit("mpi", n_workers=None, **params).fit(X, y, sample_weight)
np.testing.assert_array_equal(est.ensemble_coef_, reference.ensemble_coef_)
assert est.validation_scores_ == reference.validation_scores_

# QSGD at 8 bits sends at most 1/7.9 of SGD's bytes at d = 4000, counted from
# the buffers that went through Allgatherv / Gatherv.
X_wide, y_wide = make_relu_regression(
    n_samples=8 * size, n_features=4000, random_state=0
)
sent = {}
for solver in ("sgd", "qsgd"):
    for topology in ("allgather", "master-worker"):
        est = fit(
            MPIBackend(topology=topology),
            solver=solver,
            batch_size=2 * size,
            max_iter=1,
            init="zeros",
            learning_rate=1e-4,
        ).fit(X_wide, y_wide)
        sent[solver, topology] = est.comm_record_.bytes_sent
        assert est.comm_record_.n_messages == est.t_ * size
for topology in ("allgather", "master-worker"):
    assert sent["qsgd", topology] <= sent["sgd", topology] / 7.9, sent

# A step that diverges fails on every rank, whichever rank does the update.
for topology in ("allgather", "master-worker"):
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            fit(MPIBackend(topology=topology), learning_rate=1e9, init="zeros").fit(
                X, y
            )
    except (FloatingPointError, RuntimeError) as exc:
        assert "learning_rate" in str(exc), exc
    else:
        raise AssertionError("a diverging fit did not raise")

# An injected communicator survives clone (as in GridSearchCV).
duplicate = comm.Dup()
est = clone(fit(MPIBackend(comm=duplicate), solver="qsgd"))
assert est.backend.comm is duplicate
np.testing.assert_array_equal(
    est.fit(X, y).coef_, fit("inprocess", solver="qsgd").fit(X, y).coef_
)
duplicate.Free()

# Only rank 0 holds the data; the others pass None and receive their shard's
# rows only. The model is the in-process one: float32 stays float32; sample
# weights are normalized by their global mean; the validation set is split on
# rank 0 and every rank stops and keeps the same epoch.
X32, y32 = X.astype(np.float32), y.astype(np.float32)
cases = [
    ((X, y, None), dict(solver="qsgd")),
    ((X32, y32, sample_weight), dict(solver="qsgd")),
    ((X, y, sample_weight), dict(n_ensemble=2, early_stopping=True, max_iter=6)),
    ((X32, y32, None), dict(early_stopping=True, topology="master-worker")),
]
for data, params in cases:
    topology = params.pop("topology", "allgather")
    data_root = fit(MPIBackend(data="root", topology=topology), **params)
    data_root.fit(*(data if rank == 0 else (None, None, None)))
    reference = fit("inprocess", **params).fit(*data)
    np.testing.assert_array_equal(data_root.coef_, reference.coef_)
    np.testing.assert_array_equal(data_root.ensemble_coef_, reference.ensemble_coef_)
    assert data_root.intercept_ == reference.intercept_
    assert data_root.coef_.dtype == reference.coef_.dtype == data[0].dtype
    assert data_root.validation_scores_ == reference.validation_scores_
    assert data_root.n_iter_ == reference.n_iter_
    assert data_root.n_features_in_ == X.shape[1]

# partial_fit: each call scatters its rows; the model continues on every rank.
data_root, reference = fit(MPIBackend(data="root")), fit("inprocess")
for part in (slice(0, 120), slice(120, 240)):
    data_root.partial_fit(*((X[part], y[part]) if rank == 0 else (None, None)))
    reference.partial_fit(X[part], y[part])
np.testing.assert_array_equal(data_root.coef_, reference.coef_)
assert data_root.t_ == reference.t_

# Column names reach every rank (pandas is optional, as in the other tests).
try:
    import pandas as pd
except ImportError:
    pd = None
if pd is not None:
    names = [f"x{j}" for j in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=names)
    est = fit(MPIBackend(data="root"))
    est.fit(*((frame, y) if rank == 0 else (None, None)))
    assert est.feature_names_in_.tolist() == names
    est.fit(*((X, y) if rank == 0 else (None, None)))  # names dropped everywhere
    assert not hasattr(est, "feature_names_in_")

# A non-root rank never holds more than its shard: what it allocates during
# the fit is about 1/size of X, where a broadcast would allocate all of X.
X_big, y_big = make_relu_regression(n_samples=4000, n_features=60, random_state=0)
if rank > 0:
    tracemalloc.start()
est = fit(MPIBackend(data="root"), batch_size=40, max_iter=1)
est.fit(*((X_big, y_big) if rank == 0 else (None, None)))
if rank > 0:
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < (1 / size + 0.15) * X_big.nbytes, (peak, X_big.nbytes)
    assert peak > 0.9 / size * X_big.nbytes, (peak, X_big.nbytes)
np.testing.assert_array_equal(
    est.coef_,
    fit("inprocess", batch_size=40, max_iter=1).fit(X_big, y_big).coef_,
)

# Data rank 0 cannot prepare fails on every rank, not only on rank 0.
for bad in ([["a", "b"]] * 3, [1.0] * 3), (None, None), (X[:1], y[:1]):
    try:
        fit(MPIBackend(data="root"), early_stopping=True, n_workers=None).fit(
            *bad if rank == 0 else (None, None)
        )
    except ValueError as exc:
        assert rank == 0, exc
    except RuntimeError as exc:
        assert rank > 0 and "rank 0 could not prepare its data" in str(exc), exc
    else:
        raise AssertionError(f"bad data was accepted: {bad}")

# Data given on another rank as well is a clear error on every rank.
if size > 1:
    try:
        fit(MPIBackend(data="root")).fit(X, y)
    except ValueError as exc:
        assert "takes the data from rank 0 only" in str(exc), exc
        assert f"rank(s) {list(range(1, size))} passed" in str(exc), exc
    else:
        raise AssertionError("data on a non-root rank was accepted")

# random_state=None: every rank still ends with the same model.
est = fit("mpi", solver="qsgd", random_state=None, n_workers=None).fit(X, y)
coefs = comm.allgather(est.coef_)
for coef in coefs:
    np.testing.assert_array_equal(coef, coefs[0])
assert est.n_workers_ == size
np.testing.assert_array_equal(est.predict(X[:5]), comm.bcast(est.predict(X[:5])))

# Bad use: a worker count other than the number of ranks.
try:
    fit("mpi", n_workers=size + 1).fit(X, y)
except ValueError as exc:
    assert "MPI ranks" in str(exc), exc
else:
    raise AssertionError("n_workers != ranks was accepted")

# More ranks than samples: every rank raises the same clear error.
if size > 1:
    try:
        fit("mpi", n_workers=None, batch_size=1).fit(X[: size - 1], y[: size - 1])
    except ValueError as exc:
        assert "larger than the number of training samples" in str(exc), exc
    else:
        raise AssertionError("more ranks than samples was accepted")

comm.Barrier()
if rank == 0:
    print(f"ok: {size} ranks", file=sys.stderr)
