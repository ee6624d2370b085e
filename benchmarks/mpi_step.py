"""The MPI half of the ``backends`` section: run by the suite as

    mpiexec -n 2 python -m mpi4py benchmarks/mpi_step.py --rows R --d D --m M --out F

It times, in the same job and interleaved round by round, (a) one step of
``MPIBackend`` with one worker per rank and (b) one step of ``InProcessBackend``
with the same number of workers on rank 0 alone, on the same data, and writes
the medians to ``F`` (JSON). Threads, so that both use the same two cores:

- MPI: each rank computes its share on one thread (gradient and BLAS), one
  rank per core -- what a user gets with one rank per core;
- in-process: rank 0 computes on two threads (the package's default on two
  cores) while the other ranks sleep (polling a non-blocking barrier every
  millisecond, so that they do not spin on a core the way a blocking MPI
  call does).
"""

import argparse
import json
import time

import numpy as np
from mpi4py import MPI
from threadpoolctl import threadpool_limits

from sklearn_relu import _parallel, make_relu_regression
from sklearn_relu.backends import InProcessBackend, MPIBackend
from sklearn_relu.compression import Identity


def _timed(step, settle_steps, repeat):
    for _ in range(settle_steps):
        step()
    start = time.perf_counter()
    for _ in range(repeat):
        step()
    return (time.perf_counter() - start) / repeat


def _sleep_until_released(comm):
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.001)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--d", type=int, required=True)
    parser.add_argument("--m", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--settle-steps", type=int, default=50)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()

    X, y = make_relu_regression(n_samples=args.rows, n_features=args.d, random_state=0)
    params = np.full(args.d, 0.01)

    def update(p, g):
        return p  # time the backend's step, not the drift of the model

    mpi = MPIBackend(comm)
    mpi.start(X, y, None, n_workers=size, batch_size=args.m, compressor=Identity())
    mpi.reseed(0)
    inprocess = None
    if rank == 0:
        inprocess = InProcessBackend()
        inprocess.start(X, y, None, n_workers=size, batch_size=args.m,
                        compressor=Identity())
        inprocess.reseed(0)

    two_threads = 2
    samples = {"mpi": [], "inprocess": []}
    for _ in range(args.rounds + 1):  # the first round is a warm-up
        comm.Barrier()
        with threadpool_limits(1):
            _parallel.N_THREADS = 1
            samples["mpi"].append(
                _timed(lambda: mpi.step(params, update), args.settle_steps, args.repeat)
            )
        if rank == 0:
            with threadpool_limits(two_threads):
                _parallel.N_THREADS = two_threads
                samples["inprocess"].append(_timed(
                    lambda: inprocess.step(params, update), args.settle_steps,
                    args.repeat,
                ))
            comm.Ibarrier().Wait()
        else:
            _sleep_until_released(comm)
    mpi.stop()
    if rank == 0:
        inprocess.stop()
        result = {name: float(np.median(values[1:])) for name, values in samples.items()}
        result.update(ranks=size, rows=args.rows, d=args.d, m=args.m,
                      rounds=args.rounds, repeat=args.repeat,
                      inprocess_threads=two_threads)
        with open(args.out, "w") as file:
            json.dump(result, file)


if __name__ == "__main__":
    main()
