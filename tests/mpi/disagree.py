"""Run under mpiexec: the last rank is given another ``max_iter``.

Every rank must raise the same clear error (and this script then exits 0)
instead of the ranks waiting for each other forever.
"""

import sys

from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.backends import MPIBackend

comm = MPI.COMM_WORLD
last = comm.Get_rank() == comm.Get_size() - 1
X, y = make_relu_regression(n_samples=200, n_features=6, random_state=0)
try:
    ReLURegressor(
        backend=MPIBackend(), n_workers=None, max_iter=5 if last else 50, tol=None,
        verbose=int(last), random_state=comm.Get_rank(),
    ).fit(X, y)
except ValueError as exc:
    print(f"rank {comm.Get_rank()} caught ValueError: {exc}", flush=True)
    sys.exit(0)
print(f"rank {comm.Get_rank()} fitted", flush=True)
