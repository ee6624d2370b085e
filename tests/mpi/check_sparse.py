"""Run under mpiexec: a sparse (CSR) X gives every rank the in-process model on
the same CSR rows, to the last bit: data="all" on the allgather,
master-worker and allreduce topologies (SGD, QSGD, IntSGD), data="root"
(rank 0 scatters each rank its rows' entries), data="local" (each rank its
own CSR rows; with sample weights as close as data="local" gets to a dense
fit's weights, which each rank normalizes on its own first), float32 and
partial_fit.
"""

import sys

import numpy as np
import scipy.sparse as sp
from _checks import assert_matches_inprocess, same_on_every_rank
from mpi4py import MPI

from sklearn_relu import ReLURegressor
from sklearn_relu._worker import shard_bounds
from sklearn_relu.backends import MPIBackend

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
rng = np.random.default_rng(4)
X = sp.random(240, 40, density=0.15, format="csr", random_state=4,
              data_rvs=rng.standard_normal)
y = np.maximum(X @ rng.standard_normal(40) + 0.2, 0) + 0.05 * rng.standard_normal(240)
weights = rng.random(240) + 0.5


def fit(backend, **params):
    kw = dict(n_workers=size, batch_size=24, max_iter=3, tol=None, random_state=3)
    return ReLURegressor(backend=backend, **{**kw, **params}).fit(X, y)


for params in (dict(solver="sgd"), dict(solver="qsgd", bits=4)):
    reference = fit("inprocess", **params)
    assert_matches_inprocess(fit, reference, f"sparse {params}", **params)

reference = fit("inprocess", solver="intsgd")
est = fit(MPIBackend(topology="allreduce"), solver="intsgd")
np.testing.assert_array_equal(est.coef_, reference.coef_)
same_on_every_rank(est.coef_)


def fit_on(backend, data, **params):
    kw = dict(n_workers=size, batch_size=24, max_iter=3, tol=None, random_state=3)
    return ReLURegressor(backend=backend, **{**kw, **params}).fit(*data)


X32, y32 = X.astype(np.float32), y.astype(np.float32)
for data in ((X, y, None), (X32, y32, weights)):
    reference = fit_on("inprocess", data)
    data_root = fit_on(MPIBackend(data="root"),
                       data if rank == 0 else (None, None, None))
    np.testing.assert_array_equal(data_root.coef_, reference.coef_)
    assert data_root.intercept_ == reference.intercept_
    assert data_root.coef_.dtype == data[0].dtype
    start, stop = shard_bounds(X.shape[0], size, rank)
    local = fit_on(MPIBackend(data="local"), tuple(
        None if a is None else a[start:stop] for a in data
    ))
    if data[2] is None:
        np.testing.assert_array_equal(local.coef_, reference.coef_)
    else:  # each rank normalizes its weights, then rescales by the global mean
        np.testing.assert_allclose(local.coef_, reference.coef_, rtol=1e-4, atol=1e-6)
    same_on_every_rank(local.coef_)

# partial_fit continues on every rank as in-process does.
mpi, inprocess = (ReLURegressor(n_workers=size, batch_size=24, random_state=3,
                                backend=backend) for backend in ("mpi", "inprocess"))
for part in (slice(0, 120), slice(120, 240)):
    mpi.partial_fit(X[part], y[part])
    inprocess.partial_fit(X[part], y[part])
np.testing.assert_array_equal(mpi.coef_, inprocess.coef_)
np.testing.assert_array_equal(mpi.predict(X), inprocess.predict(X))

print(f"ok: {size} ranks", file=sys.stderr)
