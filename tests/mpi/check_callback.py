"""Run under mpiexec: a callback that stops the fit on one rank stops it on all.

Every rank calls its own callback; only the last rank's returns True (at step
7). Every rank must stop there, with the same model: the in-process fit whose
callback stops at step 7. A callback that raises on one rank must make every
rank raise, not leave the others waiting.
"""

import sys

import numpy as np
from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.backends import MPIBackend
from sklearn_relu.backends._mpi import RemoteWorkerError

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
last = rank == size - 1
X, y = make_relu_regression(n_samples=240, n_features=8, random_state=1)
STOP = 7


def fit(backend, callback, **params):
    kw = dict(n_workers=size, batch_size=24, max_iter=4, tol=None, random_state=3)
    return ReLURegressor(backend=backend, callback=callback, **{**kw, **params})


reference = fit("inprocess", lambda info: info.step == STOP).fit(X, y)
assert reference.t_ == STOP and reference.stopped_by_callback_

for topology in ("allgather", "master-worker"):
    for solver in ("sgd", "qsgd"):
        seen = []

        def stops_on_the_last_rank(info):
            seen.append(info.step)
            return last and info.step == STOP

        est = fit(MPIBackend(topology=topology), stops_on_the_last_rank,
                  solver=solver).fit(X, y)
        expected = fit("inprocess", lambda info: info.step == STOP,
                       solver=solver).fit(X, y)
        assert seen == list(range(STOP + 1)), (rank, topology, seen)
        assert est.t_ == STOP and est.stopped_by_callback_, (rank, est.t_)
        np.testing.assert_array_equal(est.coef_, expected.coef_)
        assert est.intercept_ == expected.intercept_
        models = comm.allgather(np.append(est.coef_, est.intercept_))
        assert all(np.array_equal(m, models[0]) for m in models), topology

# SGD summed by a float Allreduce: the ranks stop together too.
est = fit(MPIBackend(topology="allreduce"), lambda info: last and info.step == STOP)
est.fit(X, y)
assert est.t_ == STOP, est.t_


def fails_on_the_last_rank(info):
    if last and info.step == 3:
        raise KeyError("callback failed on the last rank")


try:
    fit(MPIBackend(), fails_on_the_last_rank).fit(X, y)
except KeyError:
    assert last
except RemoteWorkerError as error:
    assert not last and f"[{size - 1}]" in str(error), error
else:
    raise AssertionError("a failing callback did not stop the fit")

comm.Barrier()
if rank == 0:
    print(f"ok: {size} ranks", file=sys.stderr)
