"""The backend interface: where workers run and how their messages travel."""

import copy
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import numpy as np

from .. import _parallel
from .._shards import check_partition
from .._worker import ShardWorker
from ..aggregation import Mean
from ..attacks import replace_byzantine
from ..compression import MessageError

__all__ = ["Backend", "CommunicationRecord"]


@dataclass
class CommunicationRecord:
    """What the workers sent during a fit: the columns of the paper's Table 2.

    Attributes
    ----------
    n_messages : int
        Gradient messages sent by workers.
    bytes_sent : int
        Their total size, counted from the bytes of every message a worker
        sent, once per message (an allgather delivers each to all other
        ranks; that fan-out is the topology's, not the message's).
    float64_bytes : int
        What the same messages would take as raw float64 vectors.
    control_bytes : int
        Bytes of exact control traffic (initialization statistics, losses,
        model broadcasts), not part of the compressed gradient messages.
    n_rounds : int
        Rounds of communication: the steps of the model, each one exchange of
        the workers' messages; with ``local_steps=H``, each worker's ``H``
        local steps are one round.
    exact_scale_rounds : int
        Steps in which the workers agreed on an exact scale (the MAX of their
        statistics) before encoding: IntSGD's first step of each run, and any
        step redone because a gradient outgrew the scale predicted from the
        step before. Their bytes are in ``bytes_sent``.
    compute_seconds : float
        Time spent computing and compressing gradients.
    communicate_seconds : float
        Time spent moving and decoding messages.
    """

    n_messages: int = 0
    bytes_sent: int = 0
    float64_bytes: int = 0
    control_bytes: int = 0
    n_rounds: int = 0
    exact_scale_rounds: int = 0
    compute_seconds: float = 0.0
    communicate_seconds: float = 0.0

    @property
    def compression_ratio(self):
        """``float64_bytes / bytes_sent``: how many times fewer bytes were sent."""
        return self.float64_bytes / self.bytes_sent if self.bytes_sent else float("nan")

    def add_messages(self, messages, n_values):
        """Count ``messages`` (or their sizes in bytes) of ``n_values`` floats each."""
        sizes = [m if isinstance(m, (int, np.integer)) else len(m) for m in messages]
        self.n_messages += len(sizes)
        self.bytes_sent += int(sum(sizes))
        self.float64_bytes += 8 * n_values * len(sizes)

    def as_dict(self):
        return {**asdict(self), "compression_ratio": self.compression_ratio}


def first_difference(reference, other):
    """Where ``other`` first differs from ``reference``, in words: the first
    key whose values differ when both are dicts."""
    if isinstance(reference, dict) and isinstance(other, dict):
        for key in sorted(set(reference) | set(other)):
            if reference.get(key) != other.get(key):
                return f"{key}={other.get(key)!r} instead of {reference.get(key)!r}"
    return f"{other!r} instead of {reference!r}"


class Timer:
    """Accumulate wall time into a record field: ``with Timer(rec, "compute_seconds")``."""

    def __init__(self, record, field):
        self.record, self.field = record, field

    def __enter__(self):
        self._start = time.perf_counter()

    def __exit__(self, *exc):
        elapsed = time.perf_counter() - self._start
        setattr(self.record, self.field, getattr(self.record, self.field) + elapsed)


class Backend(ABC):
    """Runs the workers of a fit and carries their messages.

    The estimator drives a fit through four calls, the same on every backend:
    :meth:`start` places one :class:`~sklearn_relu._worker.ShardWorker` per shard,
    :meth:`reduce` sums an exact shard statistic over all workers,
    :meth:`step` has every worker send its compressed gradient and applies
    ``update`` to the decoded sum (an epoch of steps at a time, through
    :meth:`run_steps`), and :meth:`stop` releases the workers.
    A backend moves and sums; it never computes a gradient itself.

    Four hooks with single-process defaults let a backend whose workers are
    separate processes that each run ``fit`` (MPI ranks) keep them in step:
    :meth:`resolve_n_workers`, :meth:`agree`, :meth:`common`,
    :meth:`prepare_data` and :meth:`process_cores`.

    Steps are deterministic given the workers' seeds: messages are decoded and
    summed in worker order, so every backend gives the same model.
    """

    #: Short name under which the backend is registered.
    name = None
    #: Whether workers run in other processes or hosts (data is shipped once).
    distributed = False

    def __init__(self):
        self.record = CommunicationRecord()

    def resolve_n_workers(self, n_workers):
        """The number of workers to use when the estimator asks for ``n_workers``.

        ``None`` means as many as the backend naturally has (one in-process, the
        number of processes under MPI). Backends with a fixed number of workers
        raise a ``ValueError`` for any other count.
        """
        return 1 if n_workers is None else n_workers

    def process_cores(self):
        """The cores this process of the fit may keep busy: all it may use here
        (its CPU affinity and container quota); a backend whose processes
        share a host (MPI ranks) gives each its share. The estimator keeps
        BLAS within them, beside the gradient's threads."""
        return _parallel._cores()

    def common(self, value):
        """``value`` as the first process of the fit holds it, on every process.

        The estimator passes everything it draws at random through here, so
        that processes running the same fit (the ranks of an MPI job) agree on
        seeds even with ``random_state=None``. A single-process backend returns
        ``value`` itself.
        """
        return value

    def main_process(self):
        """Whether this process writes the fit's files (a checkpoint): the only
        process here; one of the processes that each run ``fit`` (MPI's rank 0)."""
        return True

    def agree(self, what, value):
        """Raise on every process unless ``value`` is the same on all of them.

        The estimator passes its parameters through here once, before anything
        else is exchanged: processes that run different fits (one rank with
        another ``max_iter``) would otherwise wait for each other forever. A
        single-process backend has nothing to compare.
        """

    def prepare_data(self, prepare, X, y, sample_weight):
        """Run ``prepare(X, y, sample_weight)`` where the data is; the result here.

        ``prepare`` validates the data and splits off the validation set; it
        returns a :class:`~sklearn_relu._worker.TrainingSet`. A backend whose
        data lives on one process (``MPIBackend(data="root")``) runs it there
        and hands every other process its own shard of the rows and the
        set's :meth:`~sklearn_relu._worker.TrainingSet.summary`; an error in
        ``prepare`` must then reach every process. Single-process backends
        call ``prepare`` here.
        """
        return prepare(X, y, sample_weight)

    def gather_validation(self, statistics):
        """Every process's validation statistics (``None`` where it holds no
        validation rows), as a list the estimator combines in order.

        A single-process backend holds the whole validation set: ``[statistics]``.
        """
        return [] if statistics is None else [statistics]

    def start(
        self, X, y, sample_weight, *, n_workers, batch_size, compressor,
        aggregator=None, n_byzantine=0, attack=None, shards=None,
    ):
        """Split the rows into ``n_workers`` shards and start one worker on each.

        Starts a fresh :attr:`record`. ``batch_size`` is the points per step over
        all workers; ``compressor`` turns each worker's gradient into its message
        (each worker owns a copy); ``aggregator`` combines the decoded messages
        into the step direction (default: their mean,
        :class:`~sklearn_relu.aggregation.Mean`; this backend keeps a copy of
        it, with any memory it has), and the workers' exact statistics in
        :meth:`reduce`. The first ``n_byzantine`` workers are Byzantine: they
        send ``attack``'s version of every vector (see :meth:`worker_attack`).
        ``shards`` deals the rows (``shards.split(X, y, n_workers)``, see
        :mod:`sklearn_relu._shards`); None: equal contiguous blocks.
        """
        self.record = CommunicationRecord()
        self.compressor = compressor
        self.aggregator = Mean() if aggregator is None else copy.deepcopy(aggregator)
        if compressor.summed_only and not self.aggregator.summable:
            raise ValueError(
                f"aggregation={self.aggregator!r} needs every worker's message, but "
                f"{compressor!r} messages only exist summed; use another solver or "
                "aggregation='mean'"
            )
        self.n_byzantine, self.attack = n_byzantine, attack
        self.restart_attack(0)
        self.refuse_omniscient_attack(compressor.summed_only, repr(compressor))
        self.n_workers = n_workers
        self.shard_rows = None
        if shards is not None:
            self.shard_rows = check_partition(
                shards.split(X, y, n_workers), X.shape[0], n_workers
            )
        # Vectors summed a step: one per worker, or per host when a backend's
        # hierarchical reduction sums a host's workers before encoding.
        self.n_summands = n_workers
        self._kept = None
        # The scale the workers agreed on for the next summed step; None: agree
        # on the exact one (the MAX of their statistics) first.
        self.agreed_scale = None
        self._start(
            X, y, sample_weight, n_workers=n_workers, batch_size=batch_size,
            compressor=compressor,
        )

    @abstractmethod
    def _start(self, X, y, sample_weight, *, n_workers, batch_size, compressor):
        """Place the workers; called by :meth:`start`."""

    def restart_attack(self, entropy):
        """Seed an omniscient attack's random streams from ``entropy`` (a run's,
        common to every process) and count its rounds from 0."""
        self._attack_entropy, self._attack_rounds = int(entropy), [0, 0]

    def attack_rounds(self):
        """The omniscient attack's rounds so far (statistics', vectors'), which
        seed its streams: what a checkpoint keeps."""
        return list(self._attack_rounds)

    def restore_attack_rounds(self, rounds):
        """Continue the omniscient attack's rounds from ``rounds``."""
        self._attack_rounds = [int(count) for count in rounds]

    def refuse_omniscient_attack(self, summed, what):
        """Raise if the fit's attack needs every decoded vector (an
        :class:`~sklearn_relu.attacks.OmniscientAttack`) but ``what`` sums
        the vectors while encoded (``summed``)."""
        if summed and self.n_byzantine and getattr(self.attack, "omniscient", False):
            raise ValueError(
                f"attack={self.attack!r} reads every worker's decoded vector, but "
                f"{what} sums the vectors while encoded, so no vector is ever "
                "decoded alone: use topology='allgather' or 'master-worker' "
                "(MPI), no reduction (in-process), and a solver whose messages "
                "are decoded one by one"
            )

    def attacked_vectors(self, vectors, statistics=False):
        """``vectors`` (worker order) with the Byzantine workers' replaced by an
        omniscient attack's (:func:`~sklearn_relu.attacks.replace_byzantine`),
        or ``vectors`` itself. A step's crafted vector is re-encoded as a fresh
        message of the compressor; exact statistics travel as they are.

        Deterministic: every process that decodes a step's messages (every
        MPI rank in the allgather topology, rank 0 in master-worker) seeds
        the attack's streams from the run's entropy and the round alike.
        """
        attack = self.attack
        if not (self.n_byzantine and getattr(attack, "omniscient", False)):
            return vectors
        kind = int(statistics)
        self._attack_rounds[kind] += 1
        entropy = [self._attack_entropy, kind, self._attack_rounds[kind]]
        if statistics:
            def aggregate(candidates):
                return copy.deepcopy(self.aggregator).combine_statistics(candidates)

            return replace_byzantine(attack, vectors, self.n_byzantine, aggregate, entropy)

        def aggregate(candidates):
            return copy.deepcopy(self.aggregator).aggregate(candidates, self.compressor)

        def reencode(vector, rng):
            compressor = copy.deepcopy(self.compressor)
            compressor.reset()
            return compressor.decompress(compressor.compress(vector, rng), vector.shape[0])

        return replace_byzantine(
            attack, vectors, self.n_byzantine, aggregate, entropy, reencode
        )

    def worker_rows(self, index):
        """Worker ``index``'s row indices from the fit's ``shards``, or None
        (an equal contiguous block)."""
        return None if self.shard_rows is None else self.shard_rows[index]

    def worker_attack(self, index):
        """The attack worker ``index`` runs: the fit's for the first
        ``n_byzantine`` workers, None for the others."""
        return self.attack if index < self.n_byzantine else None

    @abstractmethod
    def call(self, function, *args):
        """``function(worker, *args)`` on every worker; results in worker order.

        ``function`` is a method of :class:`~sklearn_relu._worker.ShardWorker`
        taken from the class (``ShardWorker.reseed``) or a module-level function
        of a worker (a :func:`~sklearn_relu._worker.shard_statistic`): it
        pickles by reference, for workers in other processes.
        """

    def reduce(self, statistic, *args):
        """The total of ``statistic(worker, *args)`` over all workers (a
        :func:`~sklearn_relu._worker.shard_statistic`), combined in worker
        order by the aggregator
        (:meth:`~sklearn_relu.aggregation.Aggregator.combine_statistics`: the
        sum for the mean, a robust estimate of it for the robust rules)."""
        statistics = self.attacked_vectors(self.call(statistic, *args), statistics=True)
        return self.aggregator.combine_statistics(statistics)

    def reseed(self, entropy):
        """Restart every worker's random stream and the aggregator's memory
        (before each run of a fit); a run agrees on its first scale afresh."""
        self.aggregator.reset()
        self.agreed_scale = None
        self.restart_attack(entropy)
        self.call(ShardWorker.reseed, entropy)

    def compressor_states(self):
        """Every worker's compressor state, in worker order, as a 2-D array; None
        for a stateless compressor. What a continuing fit hands back to
        :meth:`restore_compressor_states`."""
        if not self.compressor.stateful:
            return None
        return np.array(self.call(ShardWorker.compressor_state))

    def restore_compressor_states(self, states):
        """Give each worker its row of ``states`` (after :meth:`reseed`)."""
        self.call(ShardWorker.restore_compressor_state, states)

    def momentum_states(self):
        """Every worker's momentum memory, in worker order, as a 2-D array
        (``ReLURegressor(worker_momentum=...)``); None before the first step
        or without worker momentum."""
        states = np.array(self.call(ShardWorker.momentum_state), dtype=np.float64)
        return states if states.ndim == 2 and states.shape[1] else None

    def restore_momentum_states(self, states):
        """Give each worker its row of ``states`` (after its momentum started)."""
        self.call(ShardWorker.restore_momentum_state, states)

    @abstractmethod
    def step(self, params, update):
        """One SGD step: gather the workers' messages at ``params``, decode and sum
        them in worker order, and return ``update(params, gradient)``."""

    def run_steps(self, params, update, n_steps, after_step=None):
        """``n_steps`` calls of :meth:`step`; the parameters after the last.

        The estimator runs an epoch through here, so that a backend may take
        many steps at once where it gives the same model (the in-process
        backend's compiled loop, ``sklearn_relu/_steps.py``). With
        ``after_step``, every step is taken here, one at a time, and
        ``after_step(params)`` is called after each: when it returns True the
        steps stop there, and those parameters are returned.
        """
        for _ in range(n_steps):
            params = self.step(params, update)
            if after_step is not None and after_step(params):
                break
        return params

    def any_process(self, decide):
        """Whether ``decide()`` is true on any process of the fit, on every one.

        Each process calls its own ``decide`` (the estimator's ``callback``);
        a backend whose processes each run ``fit`` (MPI ranks) combines their
        answers, so that all of them stop at the same step, and an error
        ``decide`` raises on one process reaches every process. A
        single-process backend returns ``bool(decide())``.
        """
        return bool(decide())

    def sum_decoded(self, messages, n_values):
        """Decode ``messages`` and aggregate them in the order given (worker order).

        The one place messages become a step direction, so that the summation
        order, and with it every bit of the model, is the same on every backend.
        ``n_values`` is the model's size: a message of any other length is a
        :class:`~sklearn_relu.compression.MessageError`, never broadcast.
        """
        vectors = [self.compressor.decompress(message, n_values) for message in messages]
        vectors = self.attacked_vectors(vectors)
        return self.aggregator.aggregate(vectors, self.compressor)

    def sum_encoded(self, parts):
        """Add summable compressors' vectors in the order given (worker
        order), in their type.

        For integer vectors (:class:`~sklearn_relu.compression.IntSGD`) the sum
        is exact in any order, so this gives the same bits as MPI's integer
        ``Allreduce``. The sum stays in the wire type: the compressor chose its
        levels so that it cannot overflow, and :meth:`check_summands` refuses
        a vector beyond them.
        """
        self.check_summands(parts, range(len(parts)))
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        return total

    def check_summands(self, parts, senders):
        """Raise :class:`~sklearn_relu.compression.MessageError` unless every
        one of ``parts`` (sent by the workers ``senders``, by index) is a
        vector the compressor encodes for this step's sum, all of one shape
        (:meth:`~sklearn_relu.compression.SummableCompressor.check_summand`):
        an integer beyond the agreed range would wrap the sum silently, a
        shorter vector would be broadcast into it."""
        for sender, part in zip(senders, parts):
            self.compressor.check_summand(part, self.n_summands, f"worker {sender}")
            if part.shape != parts[0].shape:
                raise MessageError(
                    f"worker {sender} sent a vector of shape {part.shape} to sum, "
                    f"where the first sent {parts[0].shape}"
                )

    def summed_step(self, params, update):
        """One step of a summable compressor, the same on every backend.

        The workers encode their gradients on the scale they agreed on in the
        last step (:attr:`agreed_scale`), and their vectors are summed while
        encoded. A compressor that needs a scale agrees on the exact one, the
        MAX of the workers' statistics, on the first step, and again when the
        sum says that a worker's gradient outgrew the agreed scale (the step is
        then redone on the same gradients); otherwise the sum itself gives the
        next step's scale. Each worker's bytes are counted as one message a
        step: its vector (twice in a redone step) and its 8-byte statistic in a
        step that agrees on the exact scale.
        """
        compressor, n_values = self.compressor, params.shape[0]
        scale, sent, draw = self.agreed_scale, 0, True
        if compressor.needs_scale and scale is None:
            scale, draw = self._max_statistic(params, draw=True), False
            sent += 8
            self.record.exact_scale_rounds += 1
        total, part_nbytes = self._sum_summands(scale, params, draw=draw)
        sent += part_nbytes
        if compressor.needs_scale:
            if compressor.needs_exact_scale(total):
                self.record.exact_scale_rounds += 1
                scale = self._max_statistic(params, draw=False)
                total, part_nbytes = self._sum_summands(scale, params, draw=False)
                sent += 8 + part_nbytes
            self.agreed_scale = compressor.next_scale(total, scale)
        self.record.add_messages([sent] * self.n_summands, n_values)
        gradient = self.aggregator.from_sum(
            compressor.decode_sum(total, scale, self.n_summands, params.dtype),
            self.n_workers, compressor,
        )
        return update(params, gradient)

    def check_reduction(self, reduction, n_workers, compressor):
        """Raise unless ``reduction`` (a MultiTree schedule or a hierarchy)
        can sum this fit's vectors: as many workers, summable messages."""
        if reduction.n_workers != n_workers:
            raise ValueError(
                f"the reduction sums the vectors of {reduction.n_workers} workers, "
                f"but the fit has n_workers={n_workers}"
            )
        if not compressor.summable or not self.aggregator.summable:
            raise ValueError(
                f"a MultiTree or hierarchical reduction sums the workers' vectors "
                f"while encoded: {compressor!r} with aggregation="
                f"{self.aggregator!r} cannot be summed; use solver='sgd' or "
                "'intsgd' with aggregation='mean'"
            )

    def _max_statistic(self, params, draw):
        """The MAX over workers of ``ShardWorker.gradient_statistic`` at ``params`` (of
        the gradient each worker kept, without ``draw``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot sum encoded vectors")

    def _sum_summands(self, scale, params, draw):
        """The sum, in worker order, of ``ShardWorker.summand`` at ``scale, params`` over
        all workers (of the gradient each worker kept, without ``draw``), and
        the bytes of one worker's vector."""
        raise NotImplementedError(f"{type(self).__name__} cannot sum encoded vectors")

    def stop(self):
        """Release the workers. Safe to call more than once."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
