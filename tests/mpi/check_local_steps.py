"""Run under mpiexec: local steps (``local_steps=4``), and worker momentum, give every rank the
in-process model, its step, rounds, messages and bytes, in every topology: the
allgather and master-worker (exact SGD, QSGD, a robust rule), the integer
allreduce (IntSGD), and MultiTree's trees (IntSGD summed on a K-node mesh).
"""

import sys

import numpy as np
from _checks import assert_matches_inprocess, same_on_every_rank
from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.backends import MPIBackend

comm = MPI.COMM_WORLD
size = comm.Get_size()
X, y = make_relu_regression(n_samples=480, n_features=10, noise=0.1, random_state=2)


def fit(backend, **params):
    kw = dict(n_workers=size, batch_size=48, local_steps=4, max_iter=3, tol=None,
              random_state=5)
    return ReLURegressor(backend=backend, **{**kw, **params}).fit(X, y)


cases = [dict(solver="sgd"), dict(solver="qsgd", bits=4),
         dict(worker_momentum=0.9, local_steps=1), dict(worker_momentum=0.5)]
if size >= 3:
    cases.append(dict(aggregation="geometric_median", n_byzantine=1))
    cases.append(dict(aggregation="geometric_median", n_byzantine=1, attack="alie",
                      worker_momentum=0.9))
for params in cases:
    reference = fit("inprocess", **params)
    assert_matches_inprocess(fit, reference, str(params), **params)

reference = fit("inprocess", solver="intsgd", worker_momentum=0.9)
for backend in (MPIBackend(topology="allreduce"),
                MPIBackend(topology="multitree", network=f"mesh:1x{size}")):
    est = fit(backend, solver="intsgd", worker_momentum=0.9)
    np.testing.assert_array_equal(est.coef_, reference.coef_, err_msg=backend.topology)
    got, want = est.comm_record_, reference.comm_record_
    assert (got.n_rounds, got.n_messages, got.bytes_sent) == (
        want.n_rounds, want.n_messages, want.bytes_sent), backend.topology
    assert est.t_ == reference.t_ == 4 * got.n_rounds
    same_on_every_rank(est.coef_, comm)

print(f"ok: {size} ranks", file=sys.stderr)
