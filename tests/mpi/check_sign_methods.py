"""Run under mpiexec: every sign, ternary and sparse method gives the in-process
model on every rank, in both topologies that decode messages one by one.

Assertions hold for any number of ranks K: every rank fits with K workers and
compares with the in-process fit on the same data with K workers. In
master-worker, a majority vote goes back to the workers as one bit a
coordinate instead of the model.
"""

import sys

import numpy as np
from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.backends import MPIBackend

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
X, y = make_relu_regression(n_samples=240, n_features=13, noise=0.1, random_state=1)

METHODS = [
    dict(solver="signsgd", aggregation="mean"),
    dict(solver="signsgd", aggregation="majority"),
    dict(solver="signum", aggregation="majority", momentum=0.8),
    dict(solver="signsgd", error_feedback=True),
    dict(solver="terngrad"),
    dict(solver="topk", k=3, error_feedback=True),
    dict(solver="sgd", aggregation="majority"),
]


def fit(backend, **params):
    kw = dict(n_workers=size, batch_size=24, max_iter=2, tol=None, random_state=3)
    return ReLURegressor(backend=backend, **{**kw, **params}).fit(X, y)


for method in METHODS:
    reference = fit("inprocess", **method)
    for topology in ("allgather", "master-worker"):
        est = fit(MPIBackend(topology=topology), **method)
        np.testing.assert_array_equal(est.coef_, reference.coef_, err_msg=str(method))
        assert est.intercept_ == reference.intercept_, method
        got, want = est.comm_record_, reference.comm_record_
        assert (got.n_messages, got.bytes_sent) == (want.n_messages, want.bytes_sent)
        if topology == "master-worker" and size > 1:
            # The model broadcast (8 bytes a parameter), or for a vote one
            # status byte and one bit a parameter, to each other rank.
            d = X.shape[1] + 1
            per_step = 1 + (d + 7) // 8 if method.get("aggregation") == "majority" else 8 * d
            assert got.control_bytes >= est.t_ * per_step * (size - 1), (method, got)
    if method["solver"] not in ("signum", "topk"):
        continue
    # The workers' state (memory, momentum) continues on every rank alike.
    reference.set_params(warm_start=True).fit(X, y)
    est = fit("mpi", n_workers=None, **method)
    est.set_params(warm_start=True).fit(X, y)
    np.testing.assert_array_equal(est.coef_, reference.coef_, err_msg=str(method))

# The sign solvers send exactly ceil(d / 8) bytes after the 8-byte header.
est = fit("mpi", n_workers=None, solver="signsgd", aggregation="majority")
assert est.comm_record_.bytes_sent == est.t_ * size * (8 + (X.shape[1] + 1 + 7) // 8)

print(f"ok: {size} ranks", file=sys.stderr)
