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

The backend's parts: this module (parameters, agreement, the fit's start and
control messages), ``_mpi_data`` (how the rows reach the ranks),
``_mpi_messages`` and ``_mpi_summed`` (a step on each topology), ``_tree``
(MultiTree's allreduce), ``_mpi_wait`` (how a rank waits, the host's layout)
and ``_shared_memory`` (the exchange of ``wait="sleep"``).
"""

import copy

import numpy as np

from .. import _parallel
from .._worker import ShardWorker, worker_arguments
from ..collectives import network_graph
from ._base import Backend, first_difference
from ._mpi_data import prepare_everywhere, prepare_local, prepare_on_root
from ._mpi_errors import INSTALL_HINT, RemoteWorkerError, import_mpi
from ._mpi_messages import MessageSteps
from ._mpi_summed import SUMMED_TOPOLOGIES, SummedSteps
from ._mpi_wait import WAIT_POLICIES, choose_wait, host_layout, poll_until
from ._shared_memory import SLEEP_SPIN_SECONDS, barrier_built, shared_exchange

__all__ = [
    "INSTALL_HINT", "MPIBackend", "RemoteWorkerError", "TOPOLOGIES", "import_mpi",
    "poll_until",
]

TOPOLOGIES = ("auto", "allreduce", "allgather", "master-worker", "multitree", "hierarchical")
DATA_MODES = ("all", "root", "local")


class MPIBackend(MessageSteps, SummedSteps, Backend):
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
        - ``"auto"`` is ``"busy"`` when each rank on this host has a core (the
          cores are the union of the CPU affinities of the host's ranks,
          capped by a container's CPU quota), else ``"yield"``. It keeps to
          MPI's own requests: ``"sleep"`` synchronizes the ranks with the
          package's own barrier, beside MPI, and is a choice to make.
        - ``"sleep"``, only when asked for (every rank on one host; Linux, with
          the package's compiled barrier), exchanges a step's messages through
          memory the ranks share (an MPI shared-memory window with two slots
          of ``8 (d + 1) + 64`` bytes a rank), in one exchange instead of a
          step's two collectives. A waiting rank yields its core for half a
          millisecond, then sleeps in the kernel (a futex) until the last rank
          arrives and wakes it: it leaves its core to the ranks that compute,
          which makes steps faster when ranks outnumber cores. Loads and
          stores are ordered by ``MPI_Win_sync``, as MPI's memory model for
          shared windows asks. The same messages are exchanged and counted,
          and the model is the in-process one bit for bit; with
          ``topology="allreduce"`` the vectors are summed in rank order, as
          in-process, rather than in MPI's order (which the other policies
          use, and which may change the last bits). The window is kept with
          the communicator and released when it is freed.

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
        # The ranks that differ from rank 0, grouped by how each differs.
        differences = {}
        for rank, other in enumerate(values):
            if other != values[0]:
                differences.setdefault(first_difference(values[0], other), []).append(rank)
        if differences:
            described = "; ".join(
                f"rank(s) {ranks} have {difference} on rank 0"
                for difference, ranks in differences.items()
            )
            raise ValueError(
                f"the MPI ranks disagree on the {what}: {described}; every rank "
                f"must call the same method with the same {what}"
            )

    def prepare_data(self, prepare, X, y, sample_weight):
        comm = self._comm
        if self.data == "all":
            # Every rank holds all rows; _start shards them.
            self._n_samples = None
            return prepare_everywhere(comm, prepare, X, y, sample_weight)
        if self.data == "root":
            data, self._n_samples = prepare_on_root(comm, prepare, X, y, sample_weight)
        else:
            data, self._n_samples = prepare_local(
                comm, self._MPI, prepare, X, y, sample_weight
            )
        return data  # _start: these rows are this rank's shard

    def gather_validation(self, statistics):
        if self.data == "local":
            # Every rank holds part of the validation set.
            return [s for s in self._comm.allgather(statistics) if s is not None]
        # The validation set is whole on rank 0 (data="all": on every rank).
        return [self.common(statistics)]

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
        rank = self._comm.Get_rank()
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
            self._refuse_different_data(X, y)
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

    def _refuse_different_data(self, X, y):
        """With ``data="all"``, every rank must hold the same rows (collective)."""
        shapes = self._comm.allgather((X.shape, y.shape, X.dtype.str))
        if any(shape != shapes[0] for shape in shapes):
            raise ValueError(
                "the MPI ranks were given different data (shape, dtype per rank: "
                f"{shapes}); with MPIBackend(data='all') every rank passes the "
                "same X and y, with data='root' only rank 0 does"
            )

    def _choose_wait(self):
        """The waiting policy in force: ``wait``, with "auto" resolved (see
        ``wait``). Collective for "auto" and "sleep"."""
        comm = self._comm
        waiting = choose_wait(self.wait, self._host_layout, comm.Get_size())
        # Agreed: an installation without the barrier on one rank only (mixed
        # environments) must not let the others allocate a window alone.
        if waiting == "sleep" and not comm.allreduce(barrier_built(), op=self._MPI.LAND):
            raise ImportError(
                "MPIBackend(wait='sleep') needs the package's compiled barrier on "
                "every rank (Linux, built at installation with a C compiler); use "
                "wait='yield'"
            )
        return waiting

    def _shared_exchange(self, n_values):
        """The shared-memory exchange of wait="sleep" (collective), with slots
        that hold any message of a vector of ``n_values`` (SGD's is
        ``8 n_values + 8`` bytes); None for the other policies."""
        if self._waiting != "sleep":
            return None
        # Agreed, so that no rank can ask for another window than the others.
        n_values = self._comm.allreduce(n_values, op=self._MPI.MAX)
        return shared_exchange(
            self._comm, self._MPI, 8 * n_values + 64, SLEEP_SPIN_SECONDS
        )

    def _host_layout(self):
        """(ranks of this communicator on this host, their cores together):
        a collective, once per communicator (see :func:`host_layout`)."""
        comm = self._comm
        if self._host is None or self._host[0] is not comm:
            self._host = (comm, *host_layout(comm, self._MPI))
        return self._host[1:]

    def process_cores(self):
        # The ranks on a host share its cores: each keeps to its share.
        ranks_here, cores = self._host_layout()
        return max(1, min(_parallel._cores(), cores // ranks_here))

    # -- waiting and agreeing on a step's status ---------------------------------
    def _wait(self, request):
        """Complete a non-blocking collective, spinning in MPI or yielding."""
        if self._waiting == "busy":
            request.Wait()
        else:
            poll_until(request.Test)

    def _wait_some(self, requests):
        """The indices of point-to-point requests that completed (at least
        one), spinning in MPI or yielding while none has."""
        MPI = self._MPI
        if self._waiting == "busy":
            return MPI.Request.Waitsome(requests)
        return poll_until(lambda: MPI.Request.Testsome(requests))

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

    # -- the workers' computations -----------------------------------------------
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

    def step(self, params, update):
        if self._topology in SUMMED_TOPOLOGIES:
            return self.summed_step(params, update)
        return self._message_step(params, update)

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
