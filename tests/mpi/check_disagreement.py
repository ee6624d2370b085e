"""Run under mpiexec: ranks that disagree with rank 0, each in its own way.

``MPIBackend.agree`` names every rank that differs from rank 0 with its own
value: ranks that differ the same way are named together, ranks that differ
otherwise each with their own difference. Every rank raises the same error.
"""

import sys

from mpi4py import MPI

from sklearn_relu.backends import MPIBackend

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()

# Rank 0 and every rank that agrees with it pass max_iter=10; the others 15
# or 20 (at 4 ranks, ranks 1 and 3 differ the same way).
MAX_ITER = [10, 15, 20, 15]


def max_iter(r):
    return MAX_ITER[r % len(MAX_ITER)]


backend = MPIBackend()
try:
    backend.agree("estimator parameters", {"max_iter": max_iter(rank), "tol": 0.001})
except ValueError as exc:
    message = str(exc)
else:
    message = None

groups = {}
for r in range(1, size):
    if max_iter(r) != max_iter(0):
        groups.setdefault(max_iter(r), []).append(r)
if not groups:  # one rank: nothing to disagree on
    assert message is None, message
else:
    described = "; ".join(
        f"rank(s) {ranks} have max_iter={value} instead of {max_iter(0)} on rank 0"
        for value, ranks in groups.items()
    )
    expected = (
        f"the MPI ranks disagree on the estimator parameters: {described}; every "
        "rank must call the same method with the same estimator parameters"
    )
    assert message == expected, (message, expected)
    # The same error on every rank.
    assert all(other == message for other in comm.allgather(message))

# Ranks that agree raise nothing.
backend.agree("estimator parameters", {"max_iter": 10})

comm.Barrier()
if rank == 0:
    print(f"ok: {size} ranks", file=sys.stderr)
