"""One worker: a shard of the data and everything computed on it.

A backend places workers where their shards live and moves bytes between them; it
calls functions of a worker (``function(worker, *args)``: a method of
:class:`ShardWorker`, or a :func:`shard_statistic`) and never does arithmetic on
the data itself. The functions are module-level, so they pickle by reference: a
joblib worker in another process is sent a function's name, not its code.
"""

import copy
import functools
import hashlib
from dataclasses import dataclass, replace

import numpy as np

from ._exceptions import DivergenceError
from ._gradient import batch_gradient, loss_sums
from ._sparse import buffers, take_rows
from ._stall import progress_sums, sample_rows

__all__ = [
    "ShardWorker", "TrainingSet", "WorkerMomentum", "batch_share", "shard_bounds",
    "shard_statistic", "worker_arguments",
]


@dataclass
class TrainingSet:
    """The training rows of a fit as one process holds them, and what every
    process of the fit must know about all of them.

    Attributes
    ----------
    X, y, sample_weight : ndarray
        The rows held here: all training rows, or only this process's shard
        when a backend handed each process its own (``sample_weight`` may be
        None).
    n_samples : int
        Training rows over all processes.
    zero_loss : float
        The training loss of the zero model, from all rows.
    mean_loss : float
        The training loss of predicting the (weighted) mean of ``y``, from all
        rows: a fit above it has a negative training R^2.
    any_positive_target : bool
        Whether some ``y`` is above 0; if none is, the best ReLU predicts 0.
    weight_sum, weight_count : float, int
        The sample weights' total and the number of rows they were scaled to
        mean 1 over, here (before the validation split).
    feature_names : ndarray of str or None
        Column names of ``X``, for ``feature_names_in_``.
    validation : tuple (X_val, y_val, sw_val) or None
        The held-out set for early stopping, where it was split off.
    """

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray = None
    n_samples: int = 0
    zero_loss: float = 0.0
    mean_loss: float = 0.0
    any_positive_target: bool = True
    weight_sum: float = 0.0
    weight_count: int = 0
    feature_names: np.ndarray = None
    validation: tuple = None

    def summary(self):
        """Everything but the arrays of rows: what other processes need to know."""
        return replace(self, X=None, y=None, sample_weight=None, validation=None)


def shard_bounds(n_samples, n_workers, index):
    """Rows ``[start, stop)`` of worker ``index``: equal contiguous shards (±1 row)."""
    base, extra = divmod(n_samples, n_workers)
    start = index * base + min(index, extra)
    return start, start + base + (index < extra)


def worker_arguments(
    X, y, sample_weight, *, index, n_workers, batch_size, compressor, attack=None,
    rows=None,
):
    """Keyword arguments of worker ``index``'s :class:`ShardWorker` on the full data.

    The shard is a view of ``index``'s rows (nothing is copied); every backend
    builds its workers from this, wherever it then sends them. ``attack`` is
    this worker's (None for an honest one). ``rows``, if given, are the
    shard's row indices (a splitter's, ``ReLURegressor(shards=...)``): the
    shard is then a copy of those rows.
    """
    if rows is None:
        rows = slice(*shard_bounds(X.shape[0], n_workers, index))
    return dict(
        X=take_rows(X, rows),
        y=y[rows],
        sample_weight=None if sample_weight is None else sample_weight[rows],
        index=index,
        n_workers=n_workers,
        n_samples=X.shape[0],
        batch_size=batch_size,
        compressor=compressor,
        attack=attack,
    )


class WorkerMomentum:
    """A worker's momentum: it sends ``m = beta m + (1 - beta) v`` of its
    vectors ``v`` (gradients, or local steps' model changes), from ``m = v`` at
    the first step (no bias towards zero).

    A Byzantine-robustness defence ("Learning from History", Karimireddy et
    al., 2021): averaging over steps shrinks the honest workers' sampling
    noise, so that an attack hidden in that noise stands out to a robust rule.
    A Byzantine worker's attack acts on its momentum, what it would send
    honestly (docs/robust.rst, "Worker momentum").

    Examples
    --------
    >>> import numpy as np
    >>> momentum = WorkerMomentum(0.5)
    >>> momentum.update(np.array([2.0])), momentum.update(np.array([0.0]))
    (array([2.]), array([1.]))
    """

    def __init__(self, beta):
        self.beta = beta
        self.memory = None

    def update(self, vector):
        if self.memory is None:
            self.memory = np.array(vector, dtype=np.float64)
        else:
            self.memory = self.beta * self.memory + (1.0 - self.beta) * vector
        return self.memory.astype(vector.dtype)

    def reset(self):
        self.memory = None

    def get_state(self):
        return np.zeros(0) if self.memory is None else self.memory.copy()

    def set_state(self, state):
        self.memory = None if len(state) == 0 else np.array(state, dtype=np.float64)


def batch_share(batch_size, n_workers, index):
    """How many of the ``batch_size`` points of a step worker ``index`` draws."""
    base, extra = divmod(batch_size, n_workers)
    return base + (index < extra)


def shard_statistic(compute):
    """A statistic of a worker's shard, ``compute(worker, *args)``, marked as
    sent to the other workers: a Byzantine worker sends its attack's version
    of it.

    Backends sum statistics with ``backend.reduce(statistic, *args)``. Define
    one at module level (or as a method of :class:`ShardWorker`), so that it
    pickles by reference.
    """

    @functools.wraps(compute)
    def sent(worker, *args):
        return worker.as_sent(compute(worker, *args))

    return sent


class ShardWorker:
    """Computes partial gradients on one shard and compresses them.

    Each step, the worker draws its share of the mini-batch uniformly with
    replacement from its own rows, computes the gradient contribution scaled so
    that the sum over all workers is an unbiased estimate of the full gradient,
    and returns the compressor's message.

    Parameters
    ----------
    X, y, sample_weight : the shard's rows (``sample_weight`` may be None).
    index : int
        This worker's rank among ``n_workers``.
    n_workers : int
    n_samples : int
        Rows over all shards.
    batch_size : int
        Points per step over all workers.
    compressor : Compressor
        Copied: the worker owns its copy and the state it keeps from step to
        step (error-feedback memory, momentum), on every backend alike.
    attack : Attack or None, default=None
        Makes this worker Byzantine: every vector it sends (its gradient,
        before the compressor encodes it, and its exact statistics) is
        ``attack(vector, rng)``, with a random stream of the worker's own.
    """

    def __init__(
        self, X, y, sample_weight, *, index, n_workers, n_samples, batch_size,
        compressor, attack=None,
    ):
        # A data attack (label flipping) trains on corrupted targets.
        y = y if attack is None else attack.poison_labels(y)
        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.index = index
        self.n_workers = n_workers
        self.n_samples = n_samples
        self.compressor = copy.deepcopy(compressor)
        self.attack = attack
        self.batch_size = batch_share(batch_size, n_workers, index)
        # E[sum over workers] = sum_w (n_w / n) * (shard mean) = full mean, even
        # when shards or shares differ by one row.
        self.scale = X.shape[0] / (n_samples * self.batch_size)
        # [local steps a round, their schedule, the next one's step]: None
        # sends a gradient a step (start_local_steps).
        self._local = None
        # WorkerMomentum, or None: see start_momentum.
        self._momentum = None
        self.reseed(0)

    def reseed(self, entropy):
        """Restart this worker's random stream from ``(entropy, index)``."""
        seed = np.random.SeedSequence(entropy, spawn_key=(self.index,))
        self._rng = np.random.default_rng(seed)
        # Its own stream, so that an attack leaves the batches and the
        # quantization noise as an honest worker would draw them.
        self._attack_rng = np.random.default_rng(
            np.random.SeedSequence(entropy, spawn_key=(self.index, 1))
        )
        #: ``[loss sum, draws]`` of the batches since :meth:`batch_loss` last
        #: read them; the compiled step loop adds to it in place.
        self.batch_loss_sums = np.zeros(2)
        self.compressor.reset()
        if self._momentum is not None:
            self._momentum.reset()

    @property
    def bit_generator(self):
        """The bit generator under this worker's random stream, which draws
        its batches and its compressor's noise (read-only).

        The compiled step loop (:func:`~sklearn_relu._steps.run_steps`) draws
        from it directly, through its ``capsule`` and holding its ``lock`` as
        the stream's own methods do, and so continues the stream exactly where
        the per-step path would.
        """
        return self._rng.bit_generator

    def compressor_state(self):
        """This worker's compressor state (1-D float64; empty when stateless)."""
        return np.asarray(self.compressor.get_state(), dtype=np.float64)

    def restore_compressor_state(self, states):
        """Continue from ``states[index]``, the states of all workers in order."""
        self.compressor.set_state(np.array(states[self.index], dtype=np.float64))

    # PCG64's state: two 128-bit integers and a cached 32-bit half, as uint64.
    _MASK64 = (1 << 64) - 1

    def random_state(self):
        """Where this worker's random stream is, as 6 uint64 (for a checkpoint)."""
        return self._words(self._rng)

    def restore_random_state(self, states):
        """Continue the random stream from ``states[index]`` (:meth:`random_state`
        of every worker, in order)."""
        self._set_words(self._rng, states[self.index])

    def attack_random_state(self):
        """Where the attack's random stream is (a Byzantine worker's noise),
        as :meth:`random_state` gives the batches'."""
        return self._words(self._attack_rng)

    def restore_attack_random_state(self, states):
        """Continue the attack's random stream from ``states[index]``."""
        self._set_words(self._attack_rng, states[self.index])

    @classmethod
    def _words(cls, generator):
        state = generator.bit_generator.state
        if state["bit_generator"] != "PCG64":
            raise TypeError(f"cannot save a {state['bit_generator']} stream")
        inner = state["state"]
        return np.array(
            [inner["state"] >> 64, inner["state"] & cls._MASK64,
             inner["inc"] >> 64, inner["inc"] & cls._MASK64,
             state["has_uint32"], state["uinteger"]],
            dtype=np.uint64,
        )

    @staticmethod
    def _set_words(generator, words):
        high, low, inc_high, inc_low, has_uint32, uinteger = (int(value) for value in words)
        generator.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": high << 64 | low, "inc": inc_high << 64 | inc_low},
            "has_uint32": has_uint32,
            "uinteger": uinteger,
        }

    def fingerprint(self):
        """SHA-256 of this shard's rows (``X``, ``y``, sample weights), as 32 uint8."""
        digest = hashlib.sha256()
        for array in (self.X, self.y, self.sample_weight):
            if array is None:
                digest.update(b"None")
                continue
            digest.update(f"{array.shape} {array.dtype.str}".encode())
            # A sparse X: its entries, column indices and row offsets.
            for part in buffers(array):
                digest.update(memoryview(np.ascontiguousarray(part)).cast("B"))
        return np.frombuffer(digest.digest(), dtype=np.uint8)

    def _batch_gradient(self, params, scale):
        """Draw a batch and return its gradient at ``params``, scaled by ``scale``."""
        rows = self._rng.integers(0, self.X.shape[0], size=self.batch_size)
        with np.errstate(over="ignore", invalid="ignore"):
            gradient, loss, weight = batch_gradient(
                self.X, self.y, self.sample_weight, params, rows, scale
            )
        if not np.isfinite(gradient).all():
            raise DivergenceError("the gradient overflowed")
        # Per draw, not per unit of weight: weights are scaled to mean 1, so this
        # estimates the same mean loss, and a batch whose rows all weigh zero
        # adds 0/1 rather than making the epoch's mean 0/0.
        self.batch_loss_sums += (loss, rows.shape[0])
        return gradient

    def _draw_gradient(self, params):
        """The vector this worker sends for the step at ``params``: its share of
        a batch's gradient, or with local steps its share of its model change
        over the round (:meth:`local_change`)."""
        if self._local is None:
            vector = self._batch_gradient(params, self.scale)
        else:
            vector = self.local_change(params)
        if self._momentum is not None:
            vector = self._momentum.update(vector)
        return self.as_sent(vector)

    @property
    def sends_gradients(self):
        """Whether this worker sends its batch's gradient as it is: no local
        steps, no worker momentum (the compiled step loop's case)."""
        return self._local is None and self._momentum is None

    def start_momentum(self, beta):
        """Send the momentum of this worker's vectors, ``beta`` the weight of
        the past (:class:`WorkerMomentum`), from a fresh memory."""
        self._momentum = WorkerMomentum(beta)

    def momentum_state(self):
        """The worker momentum's memory (1-D float64; empty before the first
        step, or without worker momentum)."""
        return np.zeros(0) if self._momentum is None else self._momentum.get_state()

    def restore_momentum_state(self, states):
        """Continue the momentum from ``states[index]``, every worker's in order."""
        self._momentum.set_state(states[self.index])

    def start_local_steps(self, local_steps, learning_rate, first):
        """Take ``local_steps`` steps of ``learning_rate`` (a schedule) on this
        shard a round from now on, the first at step ``first`` of the run;
        ``local_steps=1`` sends gradients again."""
        self._local = None if local_steps == 1 else [local_steps, learning_rate, first]

    def local_change(self, params):
        """Take the round's local steps from ``params``; this worker's share of
        the model change, in gradient units: ``(n_w / n) (params - w_H) / lr_0``.

        Each local step is an SGD step on this worker's own batch (its share of
        ``batch_size``), with the batch's mean gradient, an estimate of the full
        gradient from this shard alone. The workers' shares ``n_w / n`` sum to
        1, so a step of the round's first step size ``lr_0`` along their sum
        lands on the average of the workers' models (Local SGD, FedAvg's
        averaging): with one local step, on the SGD step.
        """
        local_steps, learning_rate, first = self._local
        rate = learning_rate.at(first)
        local = params
        for step in range(first, first + local_steps):
            gradient = self._batch_gradient(local, 1.0 / self.batch_size)
            with np.errstate(over="ignore", invalid="ignore"):
                local = local - learning_rate.at(step) * gradient
            if not np.isfinite(local).all():
                raise DivergenceError(
                    f"a local step of learning_rate={rate:.3g} overflowed"
                )
        self._local[2] = first + local_steps
        share = self.X.shape[0] / self.n_samples
        with np.errstate(over="ignore", invalid="ignore"):
            change = (params - local) * (share / rate)
        if not np.isfinite(change).all():
            raise DivergenceError(f"the model change over learning_rate={rate:.3g} overflowed")
        return change

    def gradient_message(self, params):
        """Draw a batch, compute its gradient at ``params``, return the message."""
        gradient = self._draw_gradient(params)
        try:
            return self.compressor.compress(gradient, self._rng)
        except FloatingPointError as error:
            # e.g. a QSGD norm beyond float32: the step size is the cause.
            raise DivergenceError(str(error)) from error

    # A summable compressor's step: the vector to be summed, encoded on a scale
    # the workers agreed on. The gradient is kept until the next draw, so that
    # a step can be redone on an exact scale (the MAX of the statistics).
    def gradient_statistic(self, params=None):
        """The compressor's scale statistic of the kept gradient; with
        ``params``, of a new batch's gradient at ``params``, which is kept."""
        if params is not None:
            self._pending = self._draw_gradient(params)
        return self.compressor.scale_statistic(self._pending)

    def summand(self, scale, params=None):
        """This worker's encoded vector of the kept gradient, to be summed;
        with ``params``, of a new batch's gradient at ``params``, which is kept."""
        if params is not None:
            self._pending = self._draw_gradient(params)
        return self.compressor.encode(self._pending, scale, self.n_workers, self._rng)

    # A hierarchical allreduce (sklearn_relu.collectives.Hierarchy): a host's
    # workers hand their kept gradients to the host's first worker, which
    # encodes their sum once, with its own random stream.
    def kept_gradient(self, params=None):
        """The kept gradient; with ``params``, a new batch's gradient at
        ``params``, which is kept."""
        if params is not None:
            self._pending = self._draw_gradient(params)
        return self._pending

    def encode_sum(self, vector, scale, n_summands):
        """Encode ``vector`` (its host's sum of gradients) on ``scale`` for a
        sum of ``n_summands`` such vectors, with this worker's random stream."""
        return self.compressor.encode(vector, scale, n_summands, self._rng)

    def as_sent(self, vector):
        """``vector`` as this worker sends it: the attack's version of it if
        the worker is Byzantine."""
        if self.attack is None:
            return vector
        return self.attack(np.asarray(vector), self._attack_rng)

    @shard_statistic
    def batch_loss(self):
        """``[loss_sum, draws]`` of the batches since the last call; resets."""
        out, self.batch_loss_sums = self.batch_loss_sums, np.zeros(2)
        return out

    # Exact shard statistics, summed over workers by the backend's ``reduce``;
    # those of the start and the step size are next to their math, in
    # _init.py and _step_size.py.
    @shard_statistic
    def gradient(self, params):
        """This shard's part of the full training gradient at ``params``."""
        rows = np.arange(self.X.shape[0])
        return batch_gradient(
            self.X, self.y, self.sample_weight, params, rows, 1.0 / self.n_samples
        )[0]

    @shard_statistic
    def progress(self, params):
        """:func:`~._stall.progress_sums` on rows of this shard spread evenly
        (:func:`~._stall.sample_rows`): what the stall check reads."""
        with np.errstate(over="ignore", invalid="ignore"):
            return progress_sums(
                self.X, self.y, self.sample_weight, params, sample_rows(self.X.shape[0])
            )

    @shard_statistic
    def loss(self, params):
        # An overflow is reported by the caller, which sees the infinite sum.
        with np.errstate(over="ignore", invalid="ignore"):
            return np.array(loss_sums(self.X, self.y, self.sample_weight, params))
