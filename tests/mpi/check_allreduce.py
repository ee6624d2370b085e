"""Run under mpiexec: the allreduce topology, IntSGD and data="local".

Assertions hold for any number of ranks K:
- SGD over ``Allreduce``: every rank ends with the same model, equal to the
  in-process one up to the order of float sums;
- IntSGD (integer ``Allreduce``): the in-process model, bit for bit;
- ``data="local"``: each rank passes only its rows; with the shards that
  ``data="all"`` makes, the same model; uneven shards work; a rank with no
  rows, or with other features, is a clear error on every rank;
- ``n_workers`` defaults to the number of ranks.
"""

import sys

import numpy as np
from _checks import assert_a_failing_rank_fails_every_rank, assert_refused, same_on_every_rank
from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._worker import shard_bounds
from sklearn_relu.backends import MPIBackend
from sklearn_relu.backends._mpi import RemoteWorkerError
from sklearn_relu.compression import IntSGD
from sklearn_relu.compression._intsgd import TRAILER_LENGTH

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
X, y, w_star = make_relu_regression(
    n_samples=600, n_features=12, coef=True, random_state=1
)


def fit(backend, **params):
    kw = dict(batch_size=24, max_iter=4, tol=None, random_state=3)
    return ReLURegressor(backend=backend, **{**kw, **params})


# n_workers=None (the default) is the number of ranks.
est = fit(MPIBackend(topology="allreduce")).fit(X, y)
assert est.n_workers_ == size

# SGD summed by a float Allreduce: one model on every rank, the in-process one
# up to the order in which MPI adds the ranks' gradients.
reference = fit("inprocess", n_workers=size).fit(X, y)
same_on_every_rank(est.coef_)
np.testing.assert_allclose(est.coef_, reference.coef_, rtol=1e-9, atol=1e-12)
record = est.comm_record_
assert record.n_messages == est.t_ * size
assert record.bytes_sent == record.n_messages * 8 * (X.shape[1] + 1)
converged = fit(MPIBackend(topology="allreduce"), max_iter=200, tol=1e-4,
                fit_intercept=False).fit(X, y)
same_on_every_rank(converged.coef_)
assert np.linalg.norm(converged.coef_ - w_star) / np.linalg.norm(w_star) < 1e-6

# IntSGD: integer sums are exact, so every rank has the in-process model, bit
# for bit, for every wire type; "auto" picks the allreduce for it.
for bits in (8, 16, 32):
    for backend in (MPIBackend(), MPIBackend(topology="allreduce")):
        est = fit(backend, solver="intsgd", bits=bits).fit(X, y)
        reference = fit("inprocess", solver="intsgd", bits=bits, n_workers=size).fit(
            X, y
        )
        np.testing.assert_array_equal(est.coef_, reference.coef_)
        assert est.intercept_ == reference.intercept_
        assert est.loss_curve_ == reference.loss_curve_
        got, want = est.comm_record_, reference.comm_record_
        assert (got.n_messages, got.bytes_sent) == (want.n_messages, want.bytes_sent)
        # Each step every rank's integers and trailer; in a step that agreed on
        # the exact scale its 8-byte maximum too, and the integers again when
        # the step was redone (every one but the first).
        part = (X.shape[1] + 1 + TRAILER_LENGTH) * bits // 8
        exact = got.exact_scale_rounds
        assert exact >= 1
        assert got.bytes_sent == size * (est.t_ * part + exact * 8 + (exact - 1) * part)


class NoHeadroom(IntSGD):
    """No room for the scale to grow: many steps are redone on the exact one."""

    headroom = 1.0


est = fit("mpi", solver=NoHeadroom()).fit(X, y)
reference = fit("inprocess", solver=NoHeadroom(), n_workers=size).fit(X, y)
np.testing.assert_array_equal(est.coef_, reference.coef_)
assert est.comm_record_.exact_scale_rounds == reference.comm_record_.exact_scale_rounds
assert est.comm_record_.exact_scale_rounds > est.t_ / 4
est = fit("mpi", solver="intsgd", fit_intercept=False, max_iter=200, tol=1e-4).fit(X, y)
same_on_every_rank(est.coef_)
assert np.linalg.norm(est.coef_ - w_star) / np.linalg.norm(w_star) < 1e-6

# Ranks that yield their core or sleep while waiting (as when they outnumber
# the cores) exchange the same messages: the same model, bit for bit.
for solver, topology in (("intsgd", "allreduce"), ("qsgd", "allgather"),
                         ("qsgd", "master-worker")):
    reference = fit("inprocess", solver=solver, n_workers=size).fit(X, y)
    for wait in ("yield", "busy", "sleep"):
        est = fit(MPIBackend(topology=topology, wait=wait), solver=solver).fit(X, y)
        np.testing.assert_array_equal(est.coef_, reference.coef_)
try:
    MPIBackend(wait="nap")
except ValueError as exc:
    assert "wait must be one of" in str(exc), exc
else:
    raise AssertionError("wait='nap' was accepted")

# Topologies that cannot carry a compressor say so, on every rank.
assert_refused(fit, X, y, (
    (MPIBackend(topology="allgather"), "intsgd",
     "needs MPIBackend(topology='allreduce', 'multitree' or 'hierarchical')"),
    (MPIBackend(topology="master-worker"), "intsgd", "only exist summed"),
    (MPIBackend(topology="allreduce"), "qsgd", "cannot be summed"),
))

# A rank whose gradient fails: every rank raises (no hang), also when caught.
assert_a_failing_rank_fails_every_rank(
    fit, X, y, "allreduce",
    remote_error_ok=lambda exc: rank < size - 1 and "another MPI rank failed" in str(exc)
    or "not finite" in str(exc),
)

# data="local": each rank passes only its own rows. With data="all"'s shards
# the model is data="all"'s (and the in-process one), bit for bit.
start, stop = shard_bounds(X.shape[0], size, rank)
for solver, topology in (("qsgd", "allgather"), ("intsgd", "auto"), ("sgd", "master-worker")):
    local = fit(MPIBackend(data="local", topology=topology), solver=solver)
    local.fit(X[start:stop], y[start:stop])
    everywhere = fit(MPIBackend(data="all", topology=topology), solver=solver).fit(X, y)
    np.testing.assert_array_equal(local.coef_, everywhere.coef_)
    assert local.intercept_ == everywhere.intercept_
    assert local.n_features_in_ == X.shape[1]
# Sample weights are normalized by their mean over all ranks' rows.
weights = np.linspace(0.5, 3.0, X.shape[0])
local = fit(MPIBackend(data="local")).fit(X[start:stop], y[start:stop], weights[start:stop])
everywhere = fit("inprocess", n_workers=size).fit(X, y, weights)
np.testing.assert_allclose(local.coef_, everywhere.coef_, rtol=1e-10)

# Uneven shards (rank r holds a share growing with r), early stopping split
# per rank: every rank ends with the same model, and it fits.
bounds = np.round(np.cumsum([0] + [r + 1 for r in range(size)]) / (size * (size + 1) / 2)
                  * X.shape[0]).astype(int)
mine = slice(bounds[rank], bounds[rank + 1])
est = fit(MPIBackend(data="local"), solver="intsgd", early_stopping=True, max_iter=30)
est.fit(X[mine], y[mine])
same_on_every_rank(est.coef_)
assert est.score(X, y) > 0.999, est.score(X, y)
assert len(est.validation_scores_) == est.n_iter_
same_on_every_rank(np.array(est.validation_scores_))

# A rank with no rows, or with other features: a clear error on every rank.
if size > 1:
    for rows, match in (
        (slice(0, 0) if rank == size - 1 else mine, f"rank(s) [{size - 1}] have no training rows"),
        (mine, "same features"),
    ):
        X_rank = X[rows] if match != "same features" or rank == 0 else X[rows][:, :-1]
        try:
            fit(MPIBackend(data="local")).fit(X_rank, y[rows])
        except ValueError as exc:
            assert match in str(exc), exc
        except RemoteWorkerError as exc:
            # The empty rank's own validation fails first (no rows to check).
            assert "could not use their data" in str(exc), exc
        else:
            raise AssertionError(f"data='local' accepted bad shards ({match})")

comm.Barrier()
if rank == 0:
    print(f"ok: {size} ranks", file=sys.stderr)
