"""Run under mpiexec: during a fit each rank keeps BLAS to its share of the host.

The ranks of one host share its cores; with one gradient thread a rank (as
docs/benchmarks.rst, "Threads", advises for MPI), each may run
``cores // ranks`` BLAS threads, and gets its count back after the fit.
"""

import os
import sys

os.environ["SKLEARN_RELU_THREADS"] = "1"  # before sklearn_relu reads it

import threadpoolctl  # noqa: E402
from mpi4py import MPI  # noqa: E402

from sklearn_relu import ReLURegressor, _parallel, make_relu_regression  # noqa: E402
from sklearn_relu.backends import MPIBackend  # noqa: E402

size = MPI.COMM_WORLD.Get_size()


def blas_threads():
    return [i["num_threads"] for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "blas"]


before = blas_threads()
share = max(1, _parallel._cores() // size)  # every rank of the job on this host
limit = max(1, share - _parallel.N_THREADS + 1)
expected = [min(limit, threads) for threads in before]
seen = []
X, y = make_relu_regression(n_samples=200, n_features=5, random_state=0)
ReLURegressor(
    backend=MPIBackend(), n_workers=None, max_iter=2, tol=None, random_state=0,
    callback=lambda info: seen.append(blas_threads()),
).fit(X, y)
assert seen and all(threads == expected for threads in seen), (seen, expected)
assert blas_threads() == before, (blas_threads(), before)
print(f"ok: {size} ranks, BLAS threads {before} -> {expected} during the fit",
      file=sys.stderr)
