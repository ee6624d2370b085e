"""One allreduce of a float64 vector, timed on an emulated network with a shape.

Run under ``benchmarks/netns_cluster.sh --network SPEC`` (which exports
``SKLEARN_RELU_NETWORK=SPEC`` to the ranks), once per scheme::

    sudo benchmarks/netns_cluster.sh --network torus:4x4 --rate 10mbit -- \\
        python -m mpi4py benchmarks/allreduce_topology.py --scheme multitree \\
        --label multitree --out results.jsonl

Schemes:

``mpi``
    ``comm.Allreduce`` (MPICH). Which of MPICH's algorithms runs is chosen by
    the environment the launcher passes on (``MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM``
    = ``ring``, ``recursive_doubling``, ``reduce_scatter_allgather`` or
    ``auto``; ``MPIR_CVAR_ALLREDUCE_COMPOSITION`` for the node-aware
    compositions); ``--label`` names it in the results.
``multitree``
    The package's MultiTree engine (``MPIBackend(topology="multitree")``'s
    allreduce) on the spec's graph, rank ``i`` on node ``i``.
``hierarchical``
    ``MPIBackend(topology="hierarchical")``'s: each host's ranks gathered on its
    first rank and summed there, MultiTree over the hosts (one switch), the
    sum broadcast inside each host.

Each size is timed ``--repeats`` times after one warm-up; a time is the
slowest rank's, from a barrier to the end of the allreduce. Every result is
checked against the exact sum (integer-valued floats).
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from sklearn_relu.backends._mpi import poll_until
from sklearn_relu.backends._tree import tree_allreduce
from sklearn_relu.collectives import multitree_schedule
from sklearn_relu.collectives._multitree import sum_in_order

SIZES = (4096, 65536, 1048576, 4194304)


def wait_some(requests):
    """What MPIBackend(wait="yield") does: test, yield the core, then sleep."""
    return poll_until(lambda: MPI.Request.Testsome(requests))


def make_scheme(name, comm, spec):
    """A function ``vector -> sum over ranks`` for the scheme."""
    if name == "mpi":
        def run(vector):
            out = np.empty_like(vector)
            comm.Allreduce(vector, out, op=MPI.SUM)
            return out
        return run
    if name == "multitree":
        if spec is None or spec.startswith("hosts:"):
            spec = f"switch:{comm.Get_size()}"
        schedule = multitree_schedule(spec)
        tree = comm.Dup()
        return lambda vector: tree_allreduce(tree, vector, schedule, wait_some)
    rank = comm.Get_rank()
    host = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    leaders = comm.Split(0 if host.Get_rank() == 0 else MPI.UNDEFINED, key=rank)
    n_hosts = comm.allreduce(1 if host.Get_rank() == 0 else 0)
    schedule = multitree_schedule(f"switch:{n_hosts}")

    def run(vector):
        rows = np.empty((host.Get_size(), vector.size)) if host.Get_rank() == 0 else None
        host.Gather(vector, rows, root=0)
        if rows is not None:
            total = tree_allreduce(leaders, sum_in_order(list(rows)), schedule, wait_some)
        else:
            total = np.empty_like(vector)
        host.Bcast(total, root=0)
        return total
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", choices=["mpi", "multitree", "hierarchical"], required=True)
    parser.add_argument("--label", required=True, help="the row's name (MPICH's algorithm)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="payloads in bytes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", default=None, help="label of the link rate")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines to append to")
    args = parser.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    spec = os.environ.get("SKLEARN_RELU_NETWORK")
    run = make_scheme(args.scheme, comm, spec)
    for nbytes in args.sizes:
        vector = np.full(nbytes // 8, float(rank + 1))
        exact = size * (size + 1) / 2
        times = []
        for repeat in range(args.repeats + 1):
            comm.Barrier()
            start = time.perf_counter()
            total = run(vector)
            elapsed = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
            if not np.all(total == exact):
                raise AssertionError(f"{args.label}: wrong sum at {nbytes} bytes")
            if repeat:  # the first is a warm-up (connections, buffers)
                times.append(elapsed)
        if rank == 0:
            row = dict(
                network=spec, rate=args.rate, scheme=args.scheme, label=args.label,
                ranks=size, bytes=nbytes, repeats=args.repeats,
                ms_median=float(np.median(times)) * 1e3,
                ms_min=float(np.min(times)) * 1e3, load_average=os.getloadavg()[0],
                algorithm=os.environ.get("MPIR_CVAR_ALLREDUCE_INTRA_ALGORITHM", "auto"),
                composition=os.environ.get("MPIR_CVAR_ALLREDUCE_COMPOSITION", "0"),
            )
            print(f"[allreduce] {spec} {args.label} {nbytes} B: "
                  f"{row['ms_median']:.1f} ms (min {row['ms_min']:.1f})", flush=True)
            with open(args.out, "a") as file:
                file.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
