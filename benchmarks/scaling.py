"""Scaling study: SGD and its compressed variants on W MPI ranks, to relative error 1e-6.

Run by ``benchmarks/run_scaling.sh`` under ``benchmarks/netns_cluster.sh``, which
gives every rank its own emulated NIC (a rate-limited veth into a bridge);
one invocation is one (ranks, rate) cell::

    sudo benchmarks/netns_cluster.sh -n 8 --rate 10mbit -- \\
        python -m mpi4py benchmarks/scaling.py --rate 10mbit --out results.jsonl

The problem is the paper's scenario size: a planted ReLU, n = 20000, d = 4000,
noiseless, batch 1000 over all ranks, the spectral start, ``learning_rate="auto"``,
no intercept. Every scheme runs from the same start until the relative error
``||w - w*|| / ||w*||`` is at most ``--target`` (checked after every step; the
fit is stopped there). Reported per scheme, from every rank:

- steps to the target, and wall time to it (from the barrier before ``fit``:
  the spectral start's collectives included);
- communication time per step (``comm_record_.communicate_seconds`` over the
  steps; mean and max over ranks): the time inside collectives, which is what
  the network decides when the 2 cores cannot host W ranks' computation. It
  includes waiting for ranks still computing, which with more ranks than
  cores is the CPU's doing, not the network's. So after the fit a second,
  short pass (``--sync-steps`` steps, the same start) meets in a barrier once
  each rank's part of a step is computed, before the step's first
  collective, and times the collectives from there: "network ms/step"; the
  barrier's wait is reported as "skew". Bytes and times to the target come
  from the first pass, which has no barrier;
- bytes received per rank to the target, counted at the rank's NIC
  (``/sys/class/net/eth0/statistics/rx_bytes`` in its namespace: frames with
  their TCP/IP headers), mean and max over ranks; and bytes sent as counted by
  ``comm_record_`` (gradient messages only).

``--max-seconds`` stops a scheme that is still running after that long, and
``--cap-sgd-allgather`` SGD over allgather (the float64 allgather at 16 ranks
and 10 Mbit/s takes minutes); its row then says ``capped`` and its totals are
the per-step figures times the steps that the same arithmetic needs (SGD over
allgather and over allreduce take the same steps: they add the same
gradients, in another order).
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.backends import MPIBackend

# name -> (solver, estimator params, topology)
SCHEMES = {
    "sgd-allgather": ("sgd", {}, "allgather"),
    "sgd-allreduce": ("sgd", {}, "allreduce"),
    "qsgd8-allgather": ("qsgd", {"bits": 8}, "allgather"),
    "qsgd2-elias-allgather": (
        "qsgd", {"bits": 2, "encoding": "elias", "bucket_size": 128}, "allgather"
    ),
    "qsgd8-master-worker": ("qsgd", {"bits": 8}, "master-worker"),
    "intsgd8-allreduce": ("intsgd", {"bits": 8}, "allreduce"),
    # Networks with a shape (netns_cluster.sh --network SPEC): MultiTree on the
    # spec's graph, and one encoded vector per host.
    "intsgd8-multitree": ("intsgd", {"bits": 8}, "multitree"),
    "sgd-multitree": ("sgd", {}, "multitree"),
    "intsgd8-hierarchical": ("intsgd", {"bits": 8}, "hierarchical"),
    "sgd-hierarchical": ("sgd", {}, "hierarchical"),
}


def network_option(topology):
    """MPIBackend's ``network`` for a topology: the launcher's spec for
    MultiTree (rank i on node i); the hosts on one switch for hierarchical."""
    spec = os.environ.get("SKLEARN_RELU_NETWORK")
    if topology != "multitree" or spec is None or spec.startswith("hosts:"):
        return {}
    return {"network": spec}


class _Stop(Exception):
    """Raised inside a step to end the fit: the target is reached or time is up."""


def nic_rx_bytes():
    for name in ("eth0", "lo"):
        path = Path(f"/sys/class/net/{name}/statistics/rx_bytes")
        if path.exists() and (name == "lo" or Path("/sys/class/net/eth0").exists()):
            return int(path.read_text()), name
    return 0, "none"


class TracedMPIBackend(MPIBackend):
    """Checks the relative error after every step; stops the fit at the target."""

    def __init__(self, *, w_star, target, max_seconds, max_steps=None,
                 synchronize=False, **kwargs):
        # max_seconds: when to give up (the run's row then says "capped");
        # max_steps: a timing pass's length.
        super().__init__(**kwargs)
        self.w_star, self.target, self.max_seconds = w_star, target, max_seconds
        self.max_steps, self.synchronize = max_steps, synchronize
        self.result = None

    def arm(self, rx_start, wall_start):
        self.rx_start, self.wall_start, self.steps = rx_start, wall_start, 0
        self.step_comm_start = None
        self.skew_seconds = 0.0

    def _before_collective(self):
        # Inside the step's communication time: subtracted from it below.
        if self.synchronize and self.step_comm_start is not None:
            start = time.perf_counter()
            # Waiting as the collectives do (yielding the core when ranks
            # outnumber cores): a spinning barrier would starve the others.
            self._wait(self._comm.Ibarrier())
            self.skew_seconds += time.perf_counter() - start

    def step(self, params, update):
        if self.steps == 0:
            # Communication of the steps only: the start's collectives are in
            # the wall time but not in the per-step figure.
            self.step_comm_start = self.record.communicate_seconds
            self.step_bytes_start = nic_rx_bytes()[0]
            self.start_seconds = time.perf_counter() - self.wall_start
        params = super().step(params, update)
        self.steps += 1
        error = np.linalg.norm(params - self.w_star) / np.linalg.norm(self.w_star)
        elapsed = time.perf_counter() - self.wall_start
        reached = error <= self.target
        # The ranks hold the same model, so they agree on "reached"; time is
        # per rank, so rank 0 decides when to give up.
        capped = (
            not reached and self.steps % 20 == 0
            and self.common(elapsed > self.max_seconds)
        ) or self.steps == self.max_steps
        if reached or capped:
            rx = nic_rx_bytes()[0]
            self.result = dict(
                reached=bool(reached),
                steps=self.steps,
                error=float(error),
                wall_seconds=elapsed,
                start_seconds=self.start_seconds,
                rx_bytes=rx - self.rx_start,
                rx_bytes_steps=rx - self.step_bytes_start,
                comm_seconds_steps=(
                    self.record.communicate_seconds - self.step_comm_start
                    - self.skew_seconds
                ),
                skew_seconds_steps=self.skew_seconds,
                compute_seconds=self.record.compute_seconds,
                bytes_sent=self.record.bytes_sent,
                n_messages=self.record.n_messages,
            )
            raise _Stop
        return params


def inprocess_steps(solver, params, X, y, w_star, args, n_workers):
    """Steps an in-process fit of the same scheme takes to the target."""
    def reached(info):
        error = np.linalg.norm(info.params - w_star) / np.linalg.norm(w_star)
        return error <= args.target

    est = ReLURegressor(
        solver=solver, **params, batch_size=args.batch_size, max_iter=100_000, tol=None,
        fit_intercept=False, n_workers=n_workers, random_state=args.seed, callback=reached,
    ).fit(X, y)
    return int(est.t_)


def run_scheme(name, X, y, w_star, args, comm):
    solver, params, topology = SCHEMES[name]
    # SGD over allgather computes what SGD over allreduce does, only moved
    # differently: a short run measures its per-step cost.
    cap = args.cap_sgd_allgather if name == "sgd-allgather" else args.max_seconds

    def traced_fit(**options):
        backend = TracedMPIBackend(
            w_star=w_star, target=args.target, topology=topology, wait=args.wait,
            **network_option(topology), **options,
        )
        est = ReLURegressor(
            solver=solver, **params, batch_size=args.batch_size, max_iter=100_000,
            tol=None, fit_intercept=False, backend=backend, random_state=args.seed,
        )
        comm.Barrier()
        backend.arm(nic_rx_bytes()[0], time.perf_counter())
        try:
            est.fit(X, y)
        except _Stop:
            pass
        if backend.result is None:
            raise RuntimeError(f"{name}: the fit ended before reaching {args.target}")
        return backend.result

    result = traced_fit(max_seconds=cap)
    timing = traced_fit(max_seconds=cap, max_steps=args.sync_steps, synchronize=True)
    result["network_seconds"] = timing["comm_seconds_steps"] / timing["steps"]
    result["skew_seconds"] = timing["skew_seconds_steps"] / timing["steps"]
    everyone = comm.allgather(result)
    if comm.Get_rank() != 0:
        return None
    first = everyone[0]

    def over_ranks(key, how):
        return float(how([r[key] for r in everyone]))

    steps = first["steps"]
    extrapolated = {}
    if not first["reached"] and args.extrapolate:
        # The steps the same fit needs, counted in-process (the same gradients;
        # a float sum's order changes only the last bits); time and bytes at
        # the NIC are the measured start plus the measured steps' rate.
        needed = inprocess_steps(solver, params, X, y, w_star, args, comm.Get_size())
        per_step = (over_ranks("wall_seconds", np.max)
                    - over_ranks("start_seconds", np.max)) / steps
        start_bytes = over_ranks("rx_bytes", np.mean) - over_ranks("rx_bytes_steps", np.mean)
        extrapolated = dict(
            steps_to_target=needed,
            wall_seconds_to_target=over_ranks("start_seconds", np.max) + per_step * needed,
            rx_bytes_to_target=start_bytes
            + over_ranks("rx_bytes_steps", np.mean) / steps * needed,
        )
    return dict(**extrapolated,
        scheme=name,
        label=args.label or name,
        network=os.environ.get("SKLEARN_RELU_NETWORK"),
        ranks=comm.Get_size(),
        rate=args.rate,
        n=X.shape[0],
        d=X.shape[1],
        batch_size=args.batch_size,
        reached=first["reached"],
        steps=steps,
        error=first["error"],
        wall_seconds=over_ranks("wall_seconds", np.max),
        comm_ms_per_step_mean=over_ranks("comm_seconds_steps", np.mean) / steps * 1e3,
        comm_ms_per_step_max=over_ranks("comm_seconds_steps", np.max) / steps * 1e3,
        network_ms_per_step_mean=over_ranks("network_seconds", np.mean) * 1e3,
        network_ms_per_step_max=over_ranks("network_seconds", np.max) * 1e3,
        skew_ms_per_step=over_ranks("skew_seconds", np.mean) * 1e3,
        sync_steps=args.sync_steps,
        compute_ms_per_step=over_ranks("compute_seconds", np.mean) / steps * 1e3,
        rx_bytes_per_rank_mean=over_ranks("rx_bytes", np.mean),
        rx_bytes_per_rank_max=over_ranks("rx_bytes", np.max),
        rx_bytes_per_step_mean=over_ranks("rx_bytes_steps", np.mean) / steps,
        bytes_sent_per_rank_per_step=first["bytes_sent"] / first["n_messages"],
        nic=nic_rx_bytes()[1],
        wait=args.wait,
        load_average=os.getloadavg()[0],
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", default="unlimited", help="label of the link rate")
    parser.add_argument("--schemes", nargs="+", choices=list(SCHEMES),
                        default=list(SCHEMES))
    parser.add_argument("--n-samples", type=int, default=20000)
    parser.add_argument("--n-features", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--target", type=float, default=1e-6)
    parser.add_argument("--max-seconds", type=float, default=float("inf"),
                        help="give up on a scheme after this long")
    parser.add_argument("--cap-sgd-allgather", type=float, default=float("inf"),
                        help="the same for SGD over allgather, whose totals are "
                        "then its per-step figures times SGD over allreduce's steps")
    parser.add_argument("--wait", choices=["auto", "busy", "yield", "sleep"], default="auto",
                        help="MPIBackend(wait=...): how ranks wait in collectives")
    parser.add_argument("--sync-steps", type=int, default=100,
                        help="steps of the pass that times the network alone (a "
                        "barrier before each step's collectives)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extrapolate", action="store_true",
                        help="for a capped scheme, count the steps to the target "
                        "in-process and extrapolate its time and NIC bytes from the "
                        "measured steps")
    parser.add_argument("--label", default=None,
                        help="the row's name (default the scheme's; e.g. which MPICH "
                        "algorithm the environment chose)")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines to append to")
    args = parser.parse_args(argv)
    comm = MPI.COMM_WORLD
    X, y, w_star = make_relu_regression(
        n_samples=args.n_samples, n_features=args.n_features, coef=True,
        random_state=args.seed,
    )
    for name in args.schemes:
        row = run_scheme(name, X, y, w_star, args, comm)
        if row is not None:
            print(f"[scaling] {row['ranks']} ranks {row['rate']} {name}: "
                  f"{row['steps']} steps{'' if row['reached'] else ' (capped)'}, "
                  f"{row['wall_seconds']:.1f} s, comm {row['comm_ms_per_step_mean']:.2f} "
                  f"ms/step (network {row['network_ms_per_step_mean']:.2f}, skew "
                  f"{row['skew_ms_per_step']:.2f}), "
                  f"rx {row['rx_bytes_per_rank_mean'] / 1e6:.1f} MB/rank",
                  flush=True)
            with open(args.out, "a") as file:
                file.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
