"""More MPI ranks than cores: run by the suite's ``backends`` section as

    mpiexec -n 3 python -m mpi4py benchmarks/mpi_oversubscribed.py --out F

(on a 2-core machine: 3 ranks on 2 cores). In that one job, interleaved round
by round, it times one ``MPIBackend`` step (SGD, d = 100, 200 points a step)

- with all ranks (more ranks than cores), and
- with all ranks but the last, on a sub-communicator, while the last rank
  sleeps (polling a non-blocking barrier every millisecond): as many ranks as
  cores, and
- with rank 0 alone (``"1 rank"``, under ``wait="busy"`` and ``"sleep"``
  only: it never waits), while the others sleep: one rank's share of a step,
  its 200 points, with nothing to wait for,

under each waiting policy (``MPIBackend(wait="busy")``, MPI's blocking calls,
which poll; ``wait="yield"``; ``wait="sleep"``, the shared-memory exchange
whose waiters sleep; and ``wait="auto"``, the default, which yields when the
ranks on a host outnumber its cores), and writes the medians to
``F`` (JSON): seconds a step, the CPU seconds a step summed over the ranks
that stepped (``", cpu"``), and the slowest rank's gradient a step
(``", gradient"``). Every rank computes on one thread.

The waiting constants the package settled on are timed against others with
``--yield-seconds`` (how long ``"yield"`` yields before it sleeps between
tests; the package's is 1e-3) and ``--sleep-spin-seconds`` (how long
``"sleep"`` polls its barrier before it sleeps; 0.5e-3). docs/benchmarks.rst
gives what they measured.
"""

import argparse
import json
import os
import time

os.environ.setdefault("SKLEARN_RELU_THREADS", "1")

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from sklearn_relu import make_relu_regression  # noqa: E402
from sklearn_relu.backends import MPIBackend, _mpi, _mpi_wait  # noqa: E402
from sklearn_relu.compression import Identity  # noqa: E402

POLICIES = ("busy", "yield", "sleep", "auto")
#: A rank alone never waits: its step is timed with MPI's collectives (of one
#: rank) and with the shared-memory exchange.
ALONE = ("busy", "sleep")


def _sleep_until_released(comm):
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.001)


def _timed_steps(backend, params, steps):
    """Seconds a step: wall clock, this rank's CPU, and its gradient's share."""

    def update(p, g):
        return p  # time the backend's step, not the drift of the model

    for _ in range(steps // 5):  # settle
        backend.step(params, update)
    computed = backend.record.compute_seconds
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        backend.step(params, update)
    return (
        (time.perf_counter() - start) / steps,
        (time.process_time() - cpu) / steps,
        (backend.record.compute_seconds - computed) / steps,
    )


def _start_backends(communicators, X, y, batch_size):
    """A started backend for each policy and communicator this rank is in."""
    backends = {}
    for policy in POLICIES:
        for label, comm in communicators.items():
            if comm == MPI.COMM_NULL or (label == "1 rank" and policy not in ALONE):
                continue
            backend = MPIBackend(comm, wait=policy)
            backend.start(X, y, None, n_workers=comm.Get_size(), batch_size=batch_size,
                          compressor=Identity())
            backend.reseed(0)
            backends[policy, label] = backend
    return backends


def _sample(communicators, backends, params, args):
    """Seconds a step (and its CPU and gradient) of every policy on every
    communicator, one list of rounds each, interleaved round by round."""
    world, more_label = MPI.COMM_WORLD, f"{MPI.COMM_WORLD.Get_size()} ranks"
    samples = {}
    for round_ in range(args.rounds + 1):  # the first round warms up
        for policy in POLICIES:
            for label, comm in communicators.items():
                if label == "1 rank" and policy not in ALONE:
                    continue
                world.Barrier()
                backend = backends.get((policy, label))
                if backend is None:  # the rank left out sleeps
                    _sleep_until_released(world)
                    continue
                seconds, cpu, compute = _timed_steps(backend, params, args.steps)
                # Over the ranks that stepped: the CPU they burnt a step, and
                # the longest gradient (the work that cannot be waited away).
                cpu = comm.allreduce(cpu)
                compute = comm.allreduce(compute, op=MPI.MAX)
                if label != more_label:
                    world.Ibarrier().Wait()
                if round_:
                    for name, value in (("", seconds), (", cpu", cpu),
                                        (", gradient", compute)):
                        samples.setdefault(f"{policy}, {label}{name}", []).append(value)
    return samples


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--d", type=int, default=100)
    parser.add_argument("--m", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--yield-seconds", type=float, default=None)
    parser.add_argument("--sleep-spin-seconds", type=float, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.yield_seconds is not None:
        _mpi_wait._YIELD_SECONDS = args.yield_seconds
    if args.sleep_spin_seconds is not None:
        _mpi.SLEEP_SPIN_SECONDS = args.sleep_spin_seconds
    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    fewer = world.Split(0 if rank < size - 1 else MPI.UNDEFINED, rank)
    alone = world.Split(0 if rank == 0 else MPI.UNDEFINED, rank)
    more_label, fewer_label = f"{size} ranks", f"{size - 1} ranks"
    communicators = {more_label: world, fewer_label: fewer, "1 rank": alone}

    X, y = make_relu_regression(n_samples=args.rows, n_features=args.d, random_state=0)
    params = np.full(args.d + 1, 0.01)
    backends = _start_backends(communicators, X, y, args.m)
    with threadpool_limits(1):
        samples = _sample(communicators, backends, params, args)
    choices = {policy: backends[policy, more_label]._waiting
               for policy in POLICIES}
    for backend in backends.values():
        backend.stop()
    if rank == 0:
        result = {name: float(np.median(values)) for name, values in samples.items()}
        result.update(
            ranks=size, cores=len(os.sched_getaffinity(0)), d=args.d, m=args.m,
            rows=args.rows, rounds=args.rounds, steps=args.steps,
            auto_policy=choices["auto"], yield_seconds=_mpi_wait._YIELD_SECONDS,
            sleep_spin_seconds=_mpi.SLEEP_SPIN_SECONDS,
        )
        with open(args.out, "w") as file:
            json.dump(result, file)


if __name__ == "__main__":
    main()
