"""How an MPI rank waits for the others, and the host it shares with them.

MPI implementations poll while a rank waits for a message, which is the
quickest wait when every rank has a core of its own. When the ranks on a host
outnumber its cores, the polling ranks take the cores from the ranks that
still compute: a rank then yields its core between tests of a non-blocking
request (:func:`poll_until`). ``MPIBackend(wait=...)`` names the policy;
:func:`choose_wait` resolves ``"auto"`` from the host's layout
(:func:`host_layout`).
"""

import math
import os
import time

from .. import _parallel

__all__ = ["WAIT_POLICIES", "choose_wait", "host_layout", "poll_until"]

WAIT_POLICIES = ("auto", "busy", "yield", "sleep")
#: When yielding the core, a rank tests a pending request and, between tests,
#: yields the core (``sched_yield``) for this long -- a rank that still
#: computes runs at once if it shares the core -- then sleeps this long
#: between tests, so that a long wait (a message on a slow network) costs no
#: core. Yielding rather than sleeping at once, because every hop of a
#: collective would wait for a sleeping rank's timer
#: (benchmarks/mpi_oversubscribed.py --yield-seconds); sleeping in the end,
#: because yielding throughout costs a core on a slow network (the emulated
#: network of benchmarks/run_scaling.sh). The figures: docs/benchmarks.rst.
_YIELD_SECONDS = 1e-3
_POLL_SECONDS = 20e-6
# Not on every platform (Windows has no sched_yield): a zero sleep yields there.
_yield_core = getattr(os, "sched_yield", lambda: time.sleep(0))


def poll_until(test):
    """``test()``'s first true result, calling it again and again: yielding
    the core between calls for the first :data:`_YIELD_SECONDS`, then
    sleeping :data:`_POLL_SECONDS` (the ``"yield"`` waiting policy)."""
    start = time.perf_counter()
    while not (result := test()):
        if time.perf_counter() - start < _YIELD_SECONDS:
            _yield_core()
        else:
            time.sleep(_POLL_SECONDS)
    return result


def _cpu_share():
    """(the CPUs this process may run on, joblib's count: their number, or
    the container's CPU quota where that is smaller; else infinite)."""
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = frozenset(affinity(0)) if affinity else frozenset(range(os.cpu_count() or 1))
    allowed = _parallel._cores()
    return cpus, allowed if allowed < len(cpus) else math.inf


def host_layout(comm, MPI):
    """(the ranks of ``comm`` on this host, the cores they may run on
    together): collective.

    The cores are the union of the ranks' CPU affinities, not one rank's:
    ``mpiexec -bind-to core`` gives each rank one core, and 2 ranks bound
    to 2 cores do not share one. A container's CPU quota (which joblib
    reads) caps the union.
    """
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        shares = local.allgather(_cpu_share())
    finally:
        local.Free()
    cpus = set().union(*(affinity for affinity, _ in shares))
    quota = min(allowed for _, allowed in shares)
    return len(shares), max(1, min(len(cpus), quota))


def choose_wait(wait, layout, n_ranks):
    """The policy in force for ``MPIBackend(wait=wait)``: ``"auto"`` is
    ``"busy"`` when each rank on this host has a core, else ``"yield"``.

    ``layout()`` gives :func:`host_layout` (called for ``"auto"`` and
    ``"sleep"`` only: it is collective); ``n_ranks`` is the communicator's
    size. ``"sleep"`` needs every rank on this host.
    """
    if wait in ("busy", "yield"):
        return wait
    ranks_here, cores = layout()
    if wait == "auto":
        return "yield" if ranks_here > cores else "busy"
    if ranks_here != n_ranks:
        raise ValueError(
            f"MPIBackend(wait='sleep') needs every rank on one host (it shares "
            f"memory between them), but {ranks_here} of the {n_ranks} ranks "
            "are on this one: use wait='yield'"
        )
    return "sleep"
