"""The step of the MPI topologies that sum the workers' vectors while encoded:
``"allreduce"``, ``"multitree"`` and ``"hierarchical"``.

Part of :class:`~sklearn_relu.backends.MPIBackend`, which inherits
:class:`SummedSteps`; :meth:`~sklearn_relu.backends.Backend.summed_step`
calls :meth:`~SummedSteps._max_statistic` (the ranks agree on the scale) and
:meth:`~SummedSteps._sum_summands` (the encoded vectors summed):

- ``"allreduce"``: MPI's ``Allreduce`` (with ``wait="sleep"``, one exchange
  through shared memory, summed in rank order);
- ``"multitree"``: point-to-point messages along MultiTree's trees on the
  network (:func:`~sklearn_relu.backends._tree.tree_allreduce`);
- ``"hierarchical"``: the ranks of a host hand their gradients to its first
  rank, which sums and encodes them; the hosts' first ranks run a MultiTree
  allreduce, and broadcast the result inside their host.

No status exchange precedes a collective: a rank whose gradient failed takes
part with a poisoned contribution instead (an infinite statistic, or the
compressor's failed vector), so that every rank sees the failure in the
result and raises, rather than waiting for it in a collective.
"""

import math
import time

import numpy as np

from .._worker import ShardWorker
from ..collectives import hierarchy, multitree_schedule, network_graph
from ..collectives._multitree import sum_in_order
from ._mpi_errors import RemoteWorkerError
from ._tree import tree_allreduce

__all__ = ["SUMMED_TOPOLOGIES", "SummedSteps"]

#: The topologies that sum the workers' vectors while encoded.
SUMMED_TOPOLOGIES = ("allreduce", "multitree", "hierarchical")


class SummedSteps:
    """The summed topologies' step, for :class:`MPIBackend` (which provides
    the communicator, the waiting policy, the worker and the record).

    ``_p2p`` holds the communicators of the point-to-point topologies:
    ``(duplicate,)`` for ``"multitree"``; ``(host,)`` or ``(host, leaders)``
    on a host's first rank for ``"hierarchical"``. ``_reduction`` is the
    MultiTree schedule or the :class:`~sklearn_relu.collectives.Hierarchy`.
    """

    def _start_reduction(self):
        """Build the schedule every rank runs, and the communicators that carry
        it (collective). Each topology's point-to-point messages travel on a
        duplicate of the communicator, so nothing else can match them."""
        comm = self._comm
        self._free_p2p()
        if self._topology == "multitree":
            graph = network_graph(
                f"switch:{comm.Get_size()}" if self.network is None else self.network
            )
            if graph.n_nodes != comm.Get_size():
                raise ValueError(
                    f"MPIBackend(network={self.network!r}) has {graph.n_nodes} "
                    f"compute nodes, but there are {comm.Get_size()} ranks: "
                    "topology='multitree' puts rank i on node i"
                )
            self._reduction = multitree_schedule(graph)
            self._p2p = (comm.Dup(),)
            return
        hosts = self._split_hosts()
        try:
            self._reduction = hierarchy(
                [hosts[first] for first in sorted(hosts)], self.network
            )
        except ValueError as exc:
            raise ValueError(
                f"MPIBackend(topology='hierarchical'): {exc} (the hosts are the "
                f"ranks that share memory: {len(hosts)} here)"
            ) from None
        self.n_summands = self._reduction.n_summands

    def _split_hosts(self):
        """Split the communicator by host (MPI's shared-memory split) into
        ``_p2p``; every host's ranks, by its first rank (collective)."""
        comm, MPI = self._comm, self._MPI
        rank = comm.Get_rank()
        host = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
        leader = host.bcast(rank, root=0)
        leaders = comm.Split(0 if host.Get_rank() == 0 else MPI.UNDEFINED, key=rank)
        hosts = {}
        for member, first in enumerate(comm.allgather(leader)):
            hosts.setdefault(first, []).append(member)
        self._p2p = (host, leaders) if leaders != MPI.COMM_NULL else (host,)
        return hosts

    def _free_p2p(self):
        for communicator in self._p2p:
            communicator.Free()
        self._p2p = ()

    def _max_statistic(self, params, draw):
        comm, MPI = self._comm, self._MPI
        start = time.perf_counter()
        if self._topology == "hierarchical":
            statistic, error = self._host_statistic(params, draw)
        else:
            statistic, error = self._local(
                ShardWorker.gradient_statistic, params if draw else None
            )
        compute = time.perf_counter() - start
        self._before_collective()
        agreed = np.array([math.inf if error is not None else statistic])
        if self._topology == "hierarchical":
            # The leaders agree on the MAX of the hosts' statistics; each
            # tells its host.
            host = self._p2p[0]
            if len(self._p2p) > 1:
                self._wait(self._p2p[1].Iallreduce(MPI.IN_PLACE, agreed, op=MPI.MAX))
            self._wait(host.Ibcast(agreed, root=0))
        elif self._exchange is not None:
            _, received = self._exchange.allgather(agreed.nbytes, agreed.tobytes())
            agreed = received.view(np.float64).max(keepdims=True)
        else:
            self._wait(comm.Iallreduce(MPI.IN_PLACE, agreed, op=MPI.MAX))
        self.record.compute_seconds += compute
        self.record.communicate_seconds += time.perf_counter() - start - compute
        if error is not None:
            raise error
        if not math.isfinite(agreed[0]):
            raise RemoteWorkerError(
                "another MPI rank failed to compute its gradient during the "
                "fit; see the error reported by that rank"
            )
        return float(agreed[0])

    def _sum_summands(self, scale, params, draw):
        compressor = self.compressor
        start = time.perf_counter()
        if self._topology == "hierarchical":
            part, error = self._host_summand(scale, params, draw)
        else:
            part, error = self._local(
                ShardWorker.summand, scale, params if draw else None
            )
        if error is not None or part is None:
            part = compressor.failed_summand(params.shape[0], params.dtype)
        compute = time.perf_counter() - start
        self._before_collective()
        total = self._summed(part)
        self.record.compute_seconds += compute
        self.record.communicate_seconds += time.perf_counter() - start - compute
        if error is not None:
            raise error
        if compressor.sum_failed(total):
            raise RemoteWorkerError(
                "the summed gradient is not finite: another MPI rank failed (see "
                "its error) or the gradients overflowed; if SGD diverged, use "
                "learning_rate='auto' or a smaller learning_rate"
            )
        return total, part.nbytes

    def _summed(self, part):
        """The sum of every rank's ``part``, on every rank, as the topology
        sums."""
        comm, MPI = self._comm, self._MPI
        if self._topology == "multitree":
            return tree_allreduce(self._p2p[0], part, self._reduction, self._wait_some)
        if self._topology == "hierarchical":
            host = self._p2p[0]
            if len(self._p2p) > 1:  # this rank leads its host
                total = tree_allreduce(
                    self._p2p[1], part, self._reduction.schedule, self._wait_some
                )
            else:
                total = np.empty_like(part)
            self._wait(host.Ibcast(total, root=0))
            return total
        if self._exchange is not None:
            # Summed here in rank order: the same bits as in-process.
            _, received = self._exchange.allgather(part.nbytes, part.tobytes())
            return self.sum_encoded(
                list(received.view(part.dtype).reshape((-1,) + part.shape))
            )
        total = np.empty_like(part)
        self._wait(comm.Iallreduce(part, total, op=MPI.SUM))
        return total

    # The hierarchical topology: a host's ranks hand their gradients to the
    # host's first rank (through shared memory, off the network), which sums
    # them in rank order and encodes the sum, as Hierarchy.host_sums does.
    def _gather_host(self, params):
        """Draw a batch's gradient at ``params`` and gather the host's on its
        first rank, which keeps their sum (NaN where a rank failed). Keeps
        this rank's own error, if any."""
        host = self._p2p[0]
        vector, self._kept_error = self._local(ShardWorker.kept_gradient, params)
        if vector is None:
            vector = np.full(params.shape[0], np.nan, dtype=params.dtype)
        vector = np.ascontiguousarray(vector)
        leader = host.Get_rank() == 0
        rows = np.empty((host.Get_size(),) + vector.shape, vector.dtype) if leader else None
        self._wait(host.Igather(vector, rows, root=0))
        self._kept = sum_in_order(list(rows)) if leader else None

    def _host_statistic(self, params, draw):
        """(this host's scale statistic on its first rank, 0 elsewhere; this
        rank's error), of new gradients if ``draw`` else of the kept ones."""
        if draw:
            self._gather_host(params)
        if self._kept_error is not None:
            return None, self._kept_error
        if self._kept is None:  # not the host's first rank: it has no sum
            return 0.0, None
        if not np.all(np.isfinite(self._kept)):  # a rank of this host failed
            return math.inf, None
        return self.compressor.scale_statistic(self._kept), None

    def _host_summand(self, scale, params, draw):
        """(the host's encoded sum on its first rank, None elsewhere or where a
        rank of the host failed; this rank's error)."""
        if draw:
            self._gather_host(params)
        if self._kept_error is not None:
            return None, self._kept_error
        if self._kept is None or not np.all(np.isfinite(self._kept)):
            return None, None  # the failed summand, if led, tells every host
        return self._local(ShardWorker.encode_sum, self._kept, scale, self.n_summands)
