"""Workers on MPI ranks (mpi4py): every rank runs ``fit``, each is one worker.

SPMD: the same program runs on every rank of the communicator, each rank holds
one shard and one :class:`~sklearn_relu._worker.ShardWorker`, and all ranks end
with the same model, so ``predict`` works on any of them. Gradient messages are
the compressor's bytes, moved as ``uint8`` buffers (``Allgatherv``,
``Gatherv``); only tiny control values (seeds, shapes, error flags) use mpi4py's
pickle-based lowercase methods. With ``data="root"`` the training rows are
scattered from rank 0 the same way, each rank's shard as one buffer.

Five topologies (see :doc:`/scaling` for what each costs):

``"allreduce"``
    The workers' vectors are summed while compressed by MPI's ``Allreduce``:
    float64 gradients for plain SGD (what Horovod, PyTorch DDP and most MPI
    programs run), integers for :class:`~sklearn_relu.compression.IntSGD`
    (after one 8-byte MAX ``Allreduce`` that agrees on the scale). A ring or
    reduce-scatter allreduce costs each rank about twice the vector whatever
    the number of ranks. Every rank steps its own replica. Float sums may be
    added in another order than in-process (the model can differ in the last
    bits from other backends, but is the same on every rank; ``wait="sleep"``
    adds them in rank order, as in-process); integer sums are exact, so IntSGD
    is bit-identical everywhere.
``"allgather"`` (decentralized, the paper's setting)
    Every rank receives every message, decodes them in rank order and steps
    its own replica of the model. Nothing but quantized messages travels.
``"master-worker"``
    Workers send their messages to rank 0, which decodes, sums, steps, and
    broadcasts the new model (exact floats) back.
``"multitree"``
    The summed vectors of ``"allreduce"`` travel along MultiTree's trees on
    the network (:func:`~sklearn_relu.collectives.multitree_schedule`), with
    point-to-point messages, so that no link carries two messages at once
    on a torus, a mesh or switches. The additions are the schedule's: the
    model is an in-process run's told the same schedule, bit for bit.
``"hierarchical"``
    The ranks of one host (MPI's shared-memory split) sum their vectors
    exactly on the host's first rank, which encodes the host's sum once
    (IntSGD's levels then count hosts, not ranks); one rank per host takes
    part in a MultiTree allreduce over the hosts' network, and the result is
    broadcast inside each host.

``"auto"`` (the default) is ``"allreduce"`` for compressors whose messages only
exist summed (IntSGD) and ``"allgather"`` for all others, so that the default
gives the same model, to the last bit, as every other backend.

A rank whose computation raises tells the others through the size exchange
that precedes every message exchange, so all ranks raise instead of waiting
forever. A rank that dies is detected by the MPI launcher, which ends the job.
Launch with ``mpiexec -n K python -m mpi4py script.py``: ``-m mpi4py`` aborts
the whole job when any rank ends with an uncaught exception.
"""

import copy
import math
import os
import time
from dataclasses import replace

import numpy as np

from .. import _parallel
from .._worker import ShardWorker, shard_bounds, worker_arguments
from ..collectives import hierarchy, multitree_schedule, network_graph
from ..collectives._multitree import sum_in_order
from ..compression._sign import pack_signs, unpack_signs
from ._base import Backend, first_difference
from ._shared_memory import displacements as _displacements
from ._shared_memory import futex_module, shared_exchange
from ._tree import tree_allreduce

__all__ = ["MPIBackend", "import_mpi"]

INSTALL_HINT = 'pip install "sklearn-relu[mpi]"  (or: pip install mpi4py mpich)'

TOPOLOGIES = ("auto", "allreduce", "allgather", "master-worker", "multitree", "hierarchical")
#: The topologies that sum the workers' vectors while encoded.
SUMMED_TOPOLOGIES = ("allreduce", "multitree", "hierarchical")
DATA_MODES = ("all", "root", "local")
WAIT_POLICIES = ("auto", "busy", "yield", "sleep")
#: When yielding the core, a rank tests a pending collective and, between
#: tests, yields the core (``sched_yield``) for this long -- a rank that still
#: computes runs at once if it shares the core -- then sleeps this long between
#: tests, so that a long wait (a message on a slow network) costs no core.
#: Measured at 3 ranks on 2 cores, shared memory, SGD at d = 100: 0.38 ms a
#: step yielding (the same as spinning in MPI, 0.37 ms), 1.66 ms with the
#: earlier policy (200 us of polling, then sleeps: every hop of a collective
#: waited for a sleeping rank's timer), 0.53 ms yielding for only 200 us.
#: Earlier, at 4 ranks on 2 cores and 10 Mbit/s per rank under load, IntSGD's
#: collectives took 34 ms a step spinning in MPI, 28 ms yielding throughout and
#: 11 ms polling then sleeping: long waits must end in sleeps.
_YIELD_SECONDS = 1e-3
_POLL_SECONDS = 20e-6
#: With ``wait="sleep"``, a rank polls the shared-memory barrier this long,
#: yielding its core between polls, before it sleeps. Measured at 3 ranks on 2
#: cores, SGD at d = 100: 0.25-0.29 ms a step, against 0.31-0.34 ms sleeping at
#: once (waking a rank on an idle core of a virtual machine takes ~30 us),
#: 0.27-0.31 ms polling 5 ms and 0.29 ms polling 0.1 ms.
_SLEEP_SPIN_SECONDS = 0.5e-3
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


def import_mpi():
    """``mpi4py.MPI``, or an ImportError that says what to install."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            f'backend="mpi" needs mpi4py and an MPI library; install them with: '
            f"{INSTALL_HINT}"
        ) from exc
    return MPI


class RemoteWorkerError(RuntimeError):
    """Another rank failed; its own error is reported on that rank."""


class MPIBackend(Backend):
    """One worker per MPI rank; messages travel as MPI byte buffers.

    Every rank of ``comm`` must call ``fit`` with the same parameters. The
    number of workers is the number of ranks (``n_workers=None`` picks it;
    any other count is an error).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm or None, default=None
        The communicator; ``None`` is ``MPI.COMM_WORLD``.
    topology : {"auto", "allreduce", "allgather", "master-worker", \
            "multitree", "hierarchical"}, default="auto"
        How messages travel; see the module documentation. ``"allreduce"``,
        ``"multitree"`` and ``"hierarchical"`` need a compressor whose
        vectors sum (``solver="sgd"`` or ``"intsgd"``) and
        ``aggregation="mean"``; ``"intsgd"`` needs one of them (``"auto"``
        picks ``"allreduce"``).
    network : str, edge list, NetworkGraph or None, default=None
        The network the ranks are on, as
        :func:`~sklearn_relu.collectives.network_graph` reads it
        (``"torus:4x4"``...): with ``topology="multitree"`` one node per
        rank (rank ``i`` is node ``i``); with ``"hierarchical"`` one node
        per host (hosts ordered by their lowest rank). None: every rank (or
        host) on one switch. Unused by the other topologies.
    data : {"all", "root", "local"}, default="all"
        ``"all"``: every rank passes the same ``X, y`` (for instance loaded
        from one file) and keeps only its shard's rows for training.
        ``"root"``: only rank 0 has the data and the other ranks pass
        ``X=None, y=None`` (data passed there too is an error, raised on
        every rank). Rank 0 validates it (sample weights normalized by their
        mean over all rows) and splits off the early-stopping validation set,
        which stays on rank 0 (it scores every epoch and tells the others);
        each rank then receives only its own shard's training rows, as one
        ``Scatterv`` buffer, so a rank other than 0 holds about
        ``1 / n_ranks`` of ``X``. float32 stays float32; column names reach
        every rank. An error in rank 0's data is raised on every rank.
        ``"local"``: each rank passes only its own rows (any number, at least
        one), and no process ever holds all of ``X``. The ranks agree on the
        number of rows, the features, dtype and column names, and the sample
        weights' normalization (by their mean over all rows); each rank splits
        its own early-stopping validation rows, and the validation R^2 is
        computed from every rank's share. Rank ``r``'s rows are worker ``r``'s
        shard: given the shards that ``data="all"`` would make, the model is
        the same (to the last bit without sample weights; with them, up to the
        rounding of the weights' total).

    wait : {"auto", "busy", "yield", "sleep"}, default="auto"
        How a rank waits for the other ranks in a step. MPI implementations
        poll (spin) while they wait, which is fastest when every rank has a
        core of its own. When ranks outnumber a host's cores, the polling
        ranks take the cores from the ones that still compute, and every hop
        of a collective waits for the scheduler.

        - ``"busy"`` blocks in MPI.
        - ``"yield"`` starts each collective non-blocking and tests it, giving
          the core to any other runnable process between tests
          (``sched_yield``) for the first millisecond, then sleeping 20
          microseconds between tests.
        - ``"sleep"`` (every rank on one host; Linux) exchanges a step's
          messages through memory the ranks share (an MPI shared-memory
          window with two slots of ``8 (d + 1) + 64`` bytes a rank), in one
          exchange instead of a step's two collectives. A waiting rank yields
          its core for half a millisecond, then sleeps in the kernel (a
          futex) until the last rank arrives and wakes it: it leaves its core
          to the ranks that compute. The same messages are exchanged and
          counted, and the model is the in-process one bit for bit; with
          ``topology="allreduce"`` the vectors are summed in rank order, as
          in-process, rather than in MPI's order (which the other policies
          use, and which may change the last bits). The window is kept with
          the communicator and released when it is freed.
        - ``"auto"`` is ``"busy"`` when each rank on this host has a core (the
          cores are the union of the CPU affinities of the host's ranks,
          capped by a container's CPU quota), else ``"sleep"`` when every rank
          is on one host and the package's compiled barrier is built, else
          ``"yield"``.

        See the user guide, "More ranks than cores", for what each costs.

    Examples
    --------
    Run with ``mpiexec -n 4 python -m mpi4py script.py``, where ``script.py``
    does::

        from sklearn_relu import ReLURegressor
        from sklearn_relu.backends import MPIBackend
        est = ReLURegressor(solver="qsgd", bits=8, n_workers=None,
                            backend=MPIBackend(topology="allgather"),
                            random_state=0).fit(X, y)
        est.predict(X)   # the same model on every rank
    """

    name = "mpi"
    distributed = True

    def __init__(
        self, comm=None, *, topology="auto", data="all", wait="auto", network=None
    ):
        super().__init__()
        self._MPI = import_mpi()
        if topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {topology!r}")
        if data not in DATA_MODES:
            raise ValueError(f"data must be one of {DATA_MODES}, got {data!r}")
        if wait not in WAIT_POLICIES:
            raise ValueError(f"wait must be one of {WAIT_POLICIES}, got {wait!r}")
        self.wait = wait
        self._waiting = "busy"  # the policy in force: wait, resolved at start
        self._exchange = None  # the SharedExchange of wait="sleep"
        self.comm = comm
        self.topology = topology
        self.network = network
        if network is not None:
            network_graph(network)  # a bad spec is an error here, not at fit
        self.data = data
        self._reduction = None  # the MultiTree schedule or the Hierarchy in use
        self._kept = self._kept_error = None  # hierarchical: the host's sum
        self._p2p = ()  # communicators of the point-to-point topologies
        self._worker = None
        self._n_samples = None
        self._topology = None
        self._host = None  # (communicator, its ranks on this host, their cores)

    # The communicator and mpi4py module cannot be pickled; an estimator that
    # holds this backend as a parameter must still be (to save the model).
    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(
            _MPI=None, _worker=None, comm=None, _host=None, _exchange=None,
            _reduction=None, _p2p=(),
        )
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __deepcopy__(self, memo):
        # clone() deep-copies parameters: the copy must keep the same
        # communicator (a handle, not data), which pickling would drop.
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)  # not copy.copy: it would pickle
        new.record = copy.deepcopy(self.record, memo)
        new._worker = None
        return new

    @property
    def _comm(self):
        if self._MPI is None:
            self._MPI = import_mpi()
        return self._MPI.COMM_WORLD if self.comm is None else self.comm

    @property
    def rank(self):
        return self._comm.Get_rank()

    @property
    def size(self):
        return self._comm.Get_size()

    def sum_over_ranks(self, values):
        """The sum over all ranks of a float64 array, on every rank.

        For launchers that report figures over every rank's rows (the command
        line's scores under ``data="local"``); floats are added in MPI's order.
        """
        values = np.ascontiguousarray(values, dtype=np.float64)
        total = np.empty_like(values)
        self._comm.Allreduce(values, total, op=self._MPI.SUM)
        return total

    # -- agreement before the fit ------------------------------------------------
    def resolve_n_workers(self, n_workers):
        size = self.size
        if n_workers is None:
            return size
        if n_workers != size:
            raise ValueError(
                f"n_workers={n_workers} does not match the {size} MPI ranks: with "
                f"backend='mpi' every rank is one worker; pass n_workers=None or "
                f"n_workers={size}, or launch with mpiexec -n {n_workers}"
            )
        return n_workers

    def common(self, value):
        return self._comm.bcast(value, root=0)

    def main_process(self):
        return self.rank == 0

    def agree(self, what, value):
        values = self._comm.allgather(value)
        differ = [rank for rank, other in enumerate(values) if other != values[0]]
        if differ:
            raise ValueError(
                f"the MPI ranks disagree on the {what}: rank(s) {differ} have "
                f"{first_difference(values[0], values[differ[0]])} on rank 0; "
                f"every rank must call the same method with the same {what}"
            )

    def prepare_data(self, prepare, X, y, sample_weight):
        if self.data == "local":
            return self._prepare_local(prepare, X, y, sample_weight)
        if self.data == "all":
            self._n_samples = None  # every rank holds all rows; _start shards
            # Every rank validates its own copy; one that fails must not leave
            # the others waiting in the fit's first collective (a caller that
            # catches the error would otherwise hang the job).
            return self._prepare_everywhere(prepare, X, y, sample_weight)
        comm = self._comm
        rank = comm.Get_rank()
        given = comm.allgather(any(a is not None for a in (X, y, sample_weight)))
        if any(given[1:]):
            raise ValueError(
                "MPIBackend(data='root') takes the data from rank 0 only, but "
                f"rank(s) {[r for r in range(1, len(given)) if given[r]]} passed "
                "X, y or sample_weight too: pass None there, or use data='all'"
            )
        header = data = None
        if rank == 0:
            try:
                data = prepare(X, y, sample_weight)
                rows = [
                    None if a is None else np.ascontiguousarray(a)
                    for a in (data.X, data.y, data.sample_weight)
                ]
                layouts = [
                    None if a is None else (a.shape[1:], a.dtype.str) for a in rows
                ]
                header = (data.summary(), layouts)
            except Exception as exc:  # the other ranks must not wait for data
                comm.bcast(("error", repr(exc)), root=0)
                raise
        header = comm.bcast(header, root=0)
        if header[0] == "error":
            raise RemoteWorkerError(f"rank 0 could not prepare its data: {header[1]}")
        summary, layouts = header
        shards = [
            None if layout is None else self._scatter_rows(
                rows[i] if rank == 0 else None, summary.n_samples, *layout
            )
            for i, layout in enumerate(layouts)
        ]
        self._n_samples = summary.n_samples  # _start: these rows are the shard
        return replace(
            summary, X=shards[0], y=shards[1], sample_weight=shards[2],
            validation=None if data is None else data.validation,
        )

    def _prepare_everywhere(self, prepare, X, y, sample_weight):
        """``prepare`` on this rank's data; an error on any rank raises on all."""
        try:
            data, error = prepare(X, y, sample_weight), None
        except Exception as exc:
            data, error = None, exc
        failed = self._comm.allgather(error is not None)
        if error is not None:
            raise error
        if any(failed):
            raise RemoteWorkerError(
                f"MPI rank(s) {[r for r, bad in enumerate(failed) if bad]} could "
                "not use their data; see the error reported there"
            )
        return data

    def _prepare_local(self, prepare, X, y, sample_weight):
        """Every rank keeps its own rows; the ranks agree on what describes them all."""
        comm = self._comm
        try:
            n_rows = len(X)
        except TypeError:
            n_rows = None  # not array-like: prepare() names the problem
        empty = [r for r, n in enumerate(comm.allgather(n_rows)) if n == 0]
        if empty:
            raise ValueError(
                f"MPIBackend(data='local'): rank(s) {empty} have no training rows; "
                "every rank is one worker and needs at least one row: give them "
                "rows, or launch fewer ranks"
            )
        data = self._prepare_everywhere(prepare, X, y, sample_weight)
        names = None if data.feature_names is None else list(data.feature_names)
        layouts = comm.allgather(
            (data.X.shape[0], data.X.shape[1], data.X.dtype.str, names,
             data.sample_weight is not None)
        )
        empty = [r for r, layout in enumerate(layouts) if layout[0] == 0]
        if empty:
            raise ValueError(
                f"MPIBackend(data='local'): rank(s) {empty} have no training rows; "
                "every rank is one worker and needs at least one row (after the "
                "early-stopping split): give them rows, or launch fewer ranks"
            )
        signatures = {
            (n, dtype, None if nm is None else tuple(nm), weighted)
            for _, n, dtype, nm, weighted in layouts
        }
        if len(signatures) > 1:
            described = [
                f"rank {r}: {n} features, {dtype}, names {nm}, weights {w}"
                for r, (_, n, dtype, nm, w) in enumerate(layouts)
            ]
            raise ValueError(
                "MPIBackend(data='local'): the ranks' rows must have the same "
                "features, dtype, column names and all or none sample weights; "
                "got " + "; ".join(described)
            )
        n_samples = sum(layout[0] for layout in layouts)
        sample_weight = data.sample_weight
        if sample_weight is not None:
            # The rank normalized its weights to mean 1 over its own rows; the
            # fit needs mean 1 over all rows, from every rank's total.
            shares = comm.allgather((data.weight_sum, data.weight_count))
            weight_total = math.fsum(total for total, _ in shares)
            count = sum(n for _, n in shares)
            sample_weight = sample_weight * (
                (data.weight_sum / data.weight_count) * (count / weight_total)
            )
        y64 = data.y.astype(np.float64)
        s = np.ones_like(y64) if sample_weight is None else sample_weight
        sums = np.array([s @ (y64 * y64), s.sum(dtype=np.float64), s @ y64])
        totals = np.empty_like(sums)
        comm.Allreduce(sums, totals, op=self._MPI.SUM)
        # The loss of predicting the mean of all rows' y, in a second pass
        # about that mean (not y^2 - mean^2, which cancels for nearly constant y).
        spread = np.array([s @ np.square(y64 - totals[2] / totals[1])])
        total_spread = np.empty_like(spread)
        comm.Allreduce(spread, total_spread, op=self._MPI.SUM)
        self._n_samples = n_samples  # _start: these rows are the shard
        return replace(
            data, sample_weight=sample_weight, n_samples=n_samples,
            zero_loss=0.5 * totals[0] / totals[1],
            mean_loss=0.5 * total_spread[0] / totals[1],
            any_positive_target=comm.allreduce(data.any_positive_target, op=self._MPI.LOR),
        )

    def gather_validation(self, statistics):
        if self.data == "local":
            # Every rank holds part of the validation set.
            return [s for s in self._comm.allgather(statistics) if s is not None]
        # The validation set is whole on rank 0 (data="all": on every rank).
        return [self.common(statistics)]

    def _scatter_rows(self, array, n_samples, row_shape, dtype):
        """This rank's shard of rank 0's ``array``: its rows only, one buffer
        per rank (``Scatterv`` counted in rows, so any size fits an MPI count)."""
        from mpi4py.util.dtlib import from_numpy_dtype

        comm = self._comm
        size = comm.Get_size()
        bounds = [shard_bounds(n_samples, size, r) for r in range(size)]
        start, stop = bounds[comm.Get_rank()]
        shard = np.empty((stop - start, *row_shape), dtype=np.dtype(dtype))
        row = from_numpy_dtype(shard.dtype).Create_contiguous(
            math.prod(row_shape)
        ).Commit()
        try:
            counts = [b - a for a, b in bounds]
            displacements = [a for a, _ in bounds]
            send = None if array is None else [array, counts, displacements, row]
            comm.Scatterv(send, [shard, row], root=0)
        finally:
            row.Free()
        return shard

    # -- the fit -----------------------------------------------------------------
    def _resolve_topology(self, compressor):
        if self.topology == "auto":
            return "allreduce" if compressor.summed_only else "allgather"
        summed = self.topology in SUMMED_TOPOLOGIES
        if summed and not self.aggregator.summable:
            raise ValueError(
                f"MPIBackend(topology={self.topology!r}) sums the workers' vectors, "
                f"but aggregation={self.aggregator!r} needs each of them: use "
                "topology='allgather' or 'master-worker' (or 'auto')"
            )
        if summed and not compressor.summable:
            raise ValueError(
                f"MPIBackend(topology={self.topology!r}) sums the workers' vectors "
                f"while compressed, but {compressor!r} messages cannot be summed: use "
                "solver='sgd' or solver='intsgd', or topology='allgather'"
            )
        if not summed and compressor.summed_only:
            raise ValueError(
                f"{compressor!r} messages only exist summed; it needs "
                f"MPIBackend(topology='allreduce', 'multitree' or 'hierarchical') "
                f"(or 'auto'), not {self.topology!r}"
            )
        return self.topology

    def _start(self, X, y, sample_weight, *, n_workers, batch_size, compressor):
        comm = self._comm
        rank = comm.Get_rank()
        self.resolve_n_workers(n_workers)
        if self.shard_rows is not None:
            raise ValueError(
                "ReLURegressor(shards=...) deals the rows of one process; under MPI "
                "each rank's shard is its own: use MPIBackend(data='local') with "
                "each rank's rows for heterogeneous shards, or shards=None"
            )
        self._topology = self._resolve_topology(compressor)
        self.refuse_omniscient_attack(
            self._topology in SUMMED_TOPOLOGIES, f"MPIBackend(topology={self._topology!r})"
        )
        self._waiting = self._choose_wait()
        if self._n_samples is not None:  # prepare_data scattered: X is our shard
            self._worker = ShardWorker(
                X, y, sample_weight, index=rank, n_workers=n_workers,
                n_samples=self._n_samples, batch_size=batch_size, compressor=compressor,
                attack=self.worker_attack(rank),
            )
        else:
            shapes = comm.allgather((X.shape, y.shape, X.dtype.str))
            if any(shape != shapes[0] for shape in shapes):
                raise ValueError(
                    "the MPI ranks were given different data (shape, dtype per rank: "
                    f"{shapes}); with MPIBackend(data='all') every rank passes the "
                    "same X and y, with data='root' only rank 0 does"
                )
            self._worker = ShardWorker(
                **worker_arguments(
                    X, y, sample_weight, index=rank, n_workers=n_workers,
                    batch_size=batch_size, compressor=compressor,
                    attack=self.worker_attack(rank),
                )
            )
        # Once the ranks agree on the data: the window is sized by its width.
        self._exchange = self._shared_exchange(X.shape[1] + 1)
        if self._topology in ("multitree", "hierarchical"):
            self._start_reduction()

    def _start_reduction(self):
        """Build the schedule every rank runs, and the communicators that carry
        it (collective). Each topology's point-to-point messages travel on a
        duplicate of the communicator, so nothing else can match them."""
        comm, MPI = self._comm, self._MPI
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
        rank = comm.Get_rank()
        host = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
        leader = host.bcast(rank, root=0)
        leaders = comm.Split(0 if host.Get_rank() == 0 else MPI.UNDEFINED, key=rank)
        hosts = {}
        for member, first in enumerate(comm.allgather(leader)):
            hosts.setdefault(first, []).append(member)
        self._p2p = (host, leaders) if leaders != MPI.COMM_NULL else (host,)
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

    def _free_p2p(self):
        for communicator in self._p2p:
            communicator.Free()
        self._p2p = ()

    def _choose_wait(self):
        """The waiting policy in force: ``wait``, with "auto" resolved (see
        ``wait``). Collective for "auto" and "sleep": every rank decides the
        same, as "sleep" is all ranks or none."""
        if self.wait in ("busy", "yield"):
            return self.wait
        comm = self._comm
        one_host = self._ranks_here() == comm.Get_size()
        # Agreed: an installation without the barrier on one rank only (mixed
        # environments) must not let the others allocate a window alone.
        built = comm.allreduce(futex_module() is not None, op=self._MPI.LAND)
        if self.wait == "sleep" and not one_host:
            raise ValueError(
                f"MPIBackend(wait='sleep') needs every rank on one host (it shares "
                f"memory between them), but {self._ranks_here()} of the "
                f"{comm.Get_size()} ranks are on this one: use wait='yield'"
            )
        if self.wait == "sleep" and not built:
            raise ImportError(
                "MPIBackend(wait='sleep') needs the package's compiled barrier on "
                "every rank (Linux, built at installation with a C compiler); use "
                "wait='yield'"
            )
        if self.wait == "sleep":
            return "sleep"
        # The same on every rank of one host: its ranks and the union of their cores.
        crowded = self._ranks_here() > self._host_cores()
        if crowded and one_host and built:
            return "sleep"
        return "yield" if crowded else "busy"

    def _shared_exchange(self, n_values):
        """The shared-memory exchange of wait="sleep" (collective), with slots
        that hold any message of a vector of ``n_values`` (SGD's is
        ``8 n_values + 8`` bytes); None for the other policies."""
        if self._waiting != "sleep":
            return None
        # Agreed, so that no rank can ask for another window than the others.
        n_values = self._comm.allreduce(n_values, op=self._MPI.MAX)
        return shared_exchange(
            self._comm, self._MPI, 8 * n_values + 64, _SLEEP_SPIN_SECONDS
        )

    def _ranks_here(self):
        """The ranks of this communicator on this host (a collective, once)."""
        return self._host_layout()[0]

    def _host_cores(self):
        """The cores the ranks on this host may run on, together."""
        return self._host_layout()[1]

    def _host_layout(self):
        """(ranks on this host, their cores): a collective, once.

        The cores are the union of the ranks' CPU affinities, not one rank's:
        ``mpiexec -bind-to core`` gives each rank one core, and 2 ranks bound
        to 2 cores do not share one. A container's CPU quota (which joblib
        reads) caps the union.
        """
        comm = self._comm
        if self._host is None or self._host[0] is not comm:
            local = comm.Split_type(self._MPI.COMM_TYPE_SHARED)
            try:
                shares = local.allgather(_cpu_share())
            finally:
                local.Free()
            cpus = set().union(*(affinity for affinity, _ in shares))
            quota = min(allowed for _, allowed in shares)
            self._host = (comm, len(shares), max(1, min(len(cpus), quota)))
        return self._host[1:]

    def process_cores(self):
        # The ranks on a host share its cores: each keeps to its share.
        return max(1, min(_parallel._cores(), self._host_cores() // self._ranks_here()))

    def _wait(self, request):
        """Complete a non-blocking collective, spinning in MPI or yielding."""
        if self._waiting == "busy":
            request.Wait()
        else:
            poll_until(request.Test)

    def _before_collective(self):
        """Called by every rank once its part of a step is computed, before the
        step's first collective. A measurement hook (the scaling benchmark
        synchronizes the ranks here, to time the network apart from waiting
        for ranks still computing); nothing by default."""

    def _agree_on_status(self, nbytes, error):
        """Exchange every rank's message size, or -1 from a rank that failed."""
        comm = self._comm
        if self._exchange is not None:
            sizes, _ = self._exchange.allgather(-1 if error else nbytes)
        else:
            sizes = np.empty(comm.Get_size(), dtype=np.int64)
            self._wait(comm.Iallgather(
                np.array([-1 if error else nbytes], dtype=np.int64), sizes
            ))
        return self._raise_failures(sizes, error)

    def _raise_failures(self, sizes, error):
        """Count the exchanged sizes; raise this rank's error, or say which
        other ranks failed (size -1)."""
        self.record.control_bytes += sizes.nbytes
        if error is not None:
            raise error
        failed = np.flatnonzero(sizes < 0)
        if failed.size:
            raise RemoteWorkerError(
                f"MPI rank(s) {failed.tolist()} failed during the fit; see the "
                "error reported by those ranks"
            )
        return sizes

    def any_process(self, decide):
        try:
            stop, error = bool(decide()), None
        except Exception as exc:  # raised here, reported to every other rank
            stop, error = False, exc
        # One collective that both reports errors and ORs the answers.
        return bool(self._agree_on_status(int(stop), error).any())

    def _local(self, function, *args):
        try:
            return function(self._worker, *args), None
        except Exception as exc:  # reported to every rank, raised here
            return None, exc

    def _local_array(self, function, *args):
        """This rank's ``function(worker, *args)``, once every rank computed its
        own and they agree on its shape and dtype (else all ranks raise)."""
        result, error = self._local(function, *args)
        if result is not None:
            result = np.ascontiguousarray(result)
        self._agree_on_status(0 if error is None else -1, error)
        layouts = self._comm.allgather(
            None if result is None else (result.shape, result.dtype.str)
        )
        if any(layout != layouts[0] for layout in layouts):
            raise RemoteWorkerError(
                f"ranks returned different {function.__name__} results: {layouts}"
            )
        return result

    def call(self, function, *args):
        comm = self._comm
        result = self._local_array(function, *args)
        if result is None:
            return [None] * comm.Get_size()
        gathered = np.empty((comm.Get_size(),) + result.shape, dtype=result.dtype)
        comm.Allgather(result, gathered)
        self.record.control_bytes += gathered.nbytes
        return list(gathered)

    def reduce(self, statistic, *args):
        # Gathered on rank 0 and combined there in rank order, then broadcast:
        # the same bits as every other backend, and each rank receives about
        # one vector (an allgather would deliver every rank's vector to every
        # rank: 16 x 32 kB per power iteration at d = 4000 and 16 ranks).
        comm = self._comm
        result = self._local_array(statistic, *args)
        root = comm.Get_rank() == 0
        gathered = (
            np.empty((comm.Get_size(),) + result.shape, dtype=result.dtype)
            if root else None
        )
        self._wait(comm.Igather(result, gathered, root=0))
        total = np.empty_like(result)
        if root:
            total[...] = self.aggregator.combine_statistics(
                self.attacked_vectors(list(gathered), statistics=True)
            )
        self._wait(comm.Ibcast(total, root=0))
        self.record.control_bytes += result.nbytes * (comm.Get_size() - 1) * 2
        return total

    def reseed(self, entropy):
        # Every rank holds the same entropy (the estimator's random stream is
        # common), so each reseeds its own worker without talking.
        self.aggregator.reset()
        self.agreed_scale = None
        self.restart_attack(entropy)
        self._worker.reseed(entropy)

    def _wait_some(self, requests):
        """The indices of point-to-point requests that completed (at least
        one), spinning in MPI or yielding while none has."""
        MPI = self._MPI
        if self._waiting == "busy":
            return MPI.Request.Waitsome(requests)
        return poll_until(lambda: MPI.Request.Testsome(requests))

    def step(self, params, update):
        if self._topology in SUMMED_TOPOLOGIES:
            return self.summed_step(params, update)
        comm, MPI = self._comm, self._MPI
        start = time.perf_counter()
        message, error = self._local(ShardWorker.gradient_message, params)
        computed = time.perf_counter()
        self._before_collective()
        nbytes = 0 if message is None else len(message)
        master = self._topology == "master-worker"
        if self._exchange is not None:
            # One exchange carries both the sizes and the messages.
            sizes, received = self._exchange.allgather(
                -1 if error else nbytes, b"" if message is None else message
            )
            sizes = self._raise_failures(sizes, error)
            displacements = _displacements(sizes)
        else:
            sizes = self._agree_on_status(nbytes, error)
            displacements = _displacements(sizes)
            sendbuf = np.frombuffer(message, dtype=np.uint8)
            receiving = not master or comm.Get_rank() == 0
            received = (
                np.empty(int(sizes.sum()), dtype=np.uint8) if receiving else None
            )
            recvspec = (
                [received, sizes, displacements, MPI.BYTE] if receiving else None
            )
            if master:
                self._wait(comm.Igatherv(sendbuf, recvspec, root=0))
            else:
                self._wait(comm.Iallgatherv(sendbuf, recvspec))
        self.record.add_messages(sizes, params.shape[0])

        def decode_and_update():
            messages = [
                received[offset : offset + size]
                for offset, size in zip(displacements, sizes)
            ]
            return update(params, self.sum_decoded(messages, params.shape[0]))

        if master and self.aggregator.returns_signs:
            params = self._master_vote(params, update, received, displacements, sizes)
        elif master:
            params = self._master_update(params, decode_and_update)
        else:
            # Every rank decodes the same bytes: all succeed or all raise.
            params = decode_and_update()
        self.record.compute_seconds += computed - start
        self.record.communicate_seconds += time.perf_counter() - computed
        return params

    # The summed step (Backend.summed_step) over MPI's Allreduce. No status
    # exchange precedes a collective: a rank whose gradient failed takes part
    # with a poisoned contribution instead (an infinite statistic, or the
    # compressor's failed vector), so that every rank sees the failure in the
    # result and raises, rather than waiting for it in a collective.
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
        comm, MPI, compressor = self._comm, self._MPI, self.compressor
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
        if self._topology == "multitree":
            total = tree_allreduce(self._p2p[0], part, self._reduction, self._wait_some)
        elif self._topology == "hierarchical":
            host = self._p2p[0]
            if len(self._p2p) > 1:  # this rank leads its host
                total = tree_allreduce(
                    self._p2p[1], part, self._reduction.schedule, self._wait_some
                )
            else:
                total = np.empty_like(part)
            self._wait(host.Ibcast(total, root=0))
        elif self._exchange is not None:
            # Summed here in rank order: the same bits as in-process.
            _, received = self._exchange.allgather(part.nbytes, part.tobytes())
            total = self.sum_encoded(
                list(received.view(part.dtype).reshape((-1,) + part.shape))
            )
        else:
            total = np.empty_like(part)
            self._wait(comm.Iallreduce(part, total, op=MPI.SUM))
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

    def _master_update(self, params, decode_and_update):
        """Rank 0 steps and broadcasts the model; a failed step reaches all ranks."""
        comm = self._comm
        error = None
        if comm.Get_rank() == 0:
            try:
                new = np.ascontiguousarray(decode_and_update(), dtype=params.dtype)
            except Exception as exc:
                # NaN tells the other ranks that the step failed.
                new, error = np.full_like(params, np.nan), exc
        else:
            new = np.empty_like(params)
        self._wait(comm.Ibcast(new, root=0))
        self.record.control_bytes += new.nbytes * (comm.Get_size() - 1)
        if error is not None:
            raise error
        if not np.all(np.isfinite(new)):
            raise RemoteWorkerError(
                "rank 0 failed to decode the messages or update the model (see "
                "its error); if SGD diverged, use learning_rate='auto' or a "
                "smaller learning_rate"
            )
        return new

    def _master_vote(self, params, update, received, displacements, sizes):
        """Rank 0 counts the votes and sends the result back as one bit a
        coordinate; every rank steps its own replica with it.

        The buffer's first byte says whether rank 0 could decode the messages,
        so that a failure there reaches every rank.
        """
        comm = self._comm
        d = params.shape[0]
        buffer = np.zeros(1 + (d + 7) // 8, dtype=np.uint8)
        error = None
        if comm.Get_rank() == 0:
            try:
                messages = [
                    received[offset : offset + size]
                    for offset, size in zip(displacements, sizes)
                ]
                buffer[1:] = np.frombuffer(
                    pack_signs(self.sum_decoded(messages, params.shape[0])), dtype=np.uint8
                )
            except Exception as exc:
                buffer[0], error = 1, exc
        self._wait(comm.Ibcast(buffer, root=0))
        self.record.control_bytes += buffer.nbytes * (comm.Get_size() - 1)
        if error is not None:
            raise error
        if buffer[0]:
            raise RemoteWorkerError(
                "rank 0 failed to decode the messages (see its error)"
            )
        return update(params, unpack_signs(buffer[1:], d, params.dtype))

    def stop(self):
        self._worker = None
        self._n_samples = None
        self._kept = self._kept_error = None
        if self._MPI is not None:
            self._free_p2p()

    def abort(self, status=1):
        """End every process of the job with ``status`` (``MPI_Abort``).

        For applications such as the command line, where a failure on one
        rank must not leave the others waiting.
        """
        self._comm.Abort(status)
