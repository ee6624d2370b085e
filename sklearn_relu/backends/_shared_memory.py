"""Every rank's message through memory shared by the ranks of one host.

The exchange of ``MPIBackend(wait="sleep")``, which a user asks for (``"auto"``
never picks it): each rank writes one integer (a message's size, or -1 for a
failure) and its message into its own slot of a window from
``MPI_Win_allocate_shared``, then waits at a barrier whose waiters sleep in
the kernel (``_futex.c``) until the last rank arrives. Every rank then reads
every slot. One exchange replaces the two collectives of an ``MPIBackend``
step (the status and size exchange, and the ``Allgatherv``), and no rank
polls for long: a rank waiting for another leaves its core to it.

Loads and stores follow MPI-3's memory model for shared windows (the unified
model): every rank holds a passive-target epoch on the window for its whole
life (``MPI_Win_lock_all``), calls ``MPI_Win_sync`` after writing its slot and
before arriving at the barrier (its stores reach the window before any rank
can leave the barrier), and again after leaving the barrier and before reading
the other slots (its loads see every store made before the others arrived).
The barrier is the process synchronization between the two ``MPI_Win_sync``
calls; it orders its own counter with sequentially consistent atomics.

Two sets of slots alternate, exchange by exchange. A rank writes set ``k % 2``
in exchange ``k`` only after exchange ``k - 1`` completed, so after every rank
arrived there, which each did after reading exchange ``k - 2``'s set: no slot
is overwritten while another rank may still read it, without a second barrier.
"""

import numpy as np

__all__ = [
    "SLEEP_SPIN_SECONDS", "SharedExchange", "barrier_built", "futex_module",
    "shared_exchange",
]

_ALIGN = 64
#: A rank waiting at the barrier polls it this long, yielding its core between
#: polls, before it sleeps: a rank that shares its core and still computes runs
#: at once, and a barrier seen complete while polling needs no wake-up, which
#: is slow to reach an idle core of a virtual machine (sleeping at once, or
#: polling much shorter or longer, made the step slower:
#: benchmarks/mpi_oversubscribed.py times it; the figures: docs/benchmarks.rst).
SLEEP_SPIN_SECONDS = 0.5e-3


def futex_module():
    """The compiled barrier (Linux), or None where it was not built."""
    try:
        from . import _futex
    except ImportError:
        return None
    return _futex


def barrier_built():
    """Whether the compiled barrier is built here."""
    return futex_module() is not None


#: The MPI attribute under which a communicator keeps its exchanges (see
#: :func:`shared_exchange`); created at first use.
_KEYVAL = None


def _release(comm, keyval, exchanges):
    # Called by MPI_Comm_free on every rank of the communicator, a collective:
    # freeing the windows, collective on the same ranks, is safe here (and
    # nowhere else: after an error on one rank, the others may never come).
    for exchange in exchanges:
        exchange.free()


def shared_exchange(comm, MPI, capacity, spin_seconds):
    """The exchange of ``comm`` with slots of at least ``capacity`` bytes
    (collective: every rank of ``comm`` calls it at the same point, with the
    same ``capacity``).

    A communicator keeps its exchanges as an MPI attribute, reused fit after
    fit (``backend="mpi"`` makes a new backend for every fit) and released
    when the communicator is freed (``COMM_WORLD``'s at the end of the
    process). Where more room is needed, a new exchange with at least twice
    the slots is made and the old one kept: a fit that started with it may
    still use it (a callback that fits wider data on the same ranks).
    """
    global _KEYVAL
    if _KEYVAL is None:
        _KEYVAL = MPI.Comm.Create_keyval(delete_fn=_release)
    exchanges = comm.Get_attr(_KEYVAL)
    if exchanges is None:
        exchanges = []
        comm.Set_attr(_KEYVAL, exchanges)
    if exchanges and exchanges[-1].capacity >= capacity:
        exchange = exchanges[-1]
        exchange.spin_seconds = spin_seconds
        return exchange
    if exchanges:
        capacity = max(capacity, 2 * exchanges[-1].capacity)
    exchange = SharedExchange(comm, MPI, capacity, spin_seconds)
    exchanges.append(exchange)
    return exchange


def displacements(sizes):
    """Where each of the messages of ``sizes`` bytes starts, laid end to end."""
    return np.concatenate([[0], np.cumsum(sizes)[:-1]])


def _aligned(nbytes):
    return -(-nbytes // _ALIGN) * _ALIGN


class SharedExchange:
    """All-to-all exchange of one integer and one message per rank.

    Collective: every rank of ``comm`` (all on one host) constructs it, with
    the same ``capacity``, the most bytes a message may have (a longer one is
    still exchanged: see :meth:`allgather`).

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        Ranks that share memory (``Split_type(COMM_TYPE_SHARED)`` of size
        ``comm.Get_size()``).
    MPI : module
        ``mpi4py.MPI``.
    capacity : int
        Bytes of each rank's slot.
    spin_seconds : float
        How long a waiter polls before it sleeps.
    """

    def __init__(self, comm, MPI, capacity, spin_seconds):
        self._futex = futex_module()
        if self._futex is None:
            raise ImportError("the shared-memory barrier (_futex) was not built")
        self._comm, self._MPI = comm, MPI
        self.capacity = _aligned(max(int(capacity), 1))
        self.spin_seconds = spin_seconds
        n_ranks, self._rank = comm.Get_size(), comm.Get_rank()
        control = self._futex.CONTROL_BYTES
        headers = _aligned(2 * n_ranks * 8)
        # One spare line: the shared base is aligned by the MPI library, not
        # necessarily to a cache line.
        nbytes = _ALIGN + control + headers + 2 * n_ranks * self.capacity
        self._window = MPI.Win.Allocate_shared(
            nbytes if self._rank == 0 else 0, 1, comm=comm
        )
        # The epoch in which every load and store below happens (NOCHECK: no
        # rank ever locks the window exclusively).
        self._window.Lock_all(MPI.MODE_NOCHECK)
        buffer, _ = self._window.Shared_query(0)
        memory = np.frombuffer(buffer, dtype=np.uint8)
        skip = -memory.ctypes.data % _ALIGN
        memory = memory[skip : skip + nbytes - _ALIGN]
        if self._rank == 0:
            memory[: control + headers] = 0
        # The counters are zero before anyone arrives.
        self._window.Sync()
        comm.Barrier()
        self._window.Sync()
        self._control = memory[:control]
        self._headers = memory[control : control + headers].view(np.int64)[
            : 2 * n_ranks
        ].reshape(2, n_ranks)
        self._slots = memory[control + headers :].reshape(2, n_ranks, self.capacity)
        self._exchanges = 0
        self._n_ranks = n_ranks
        self._interrupted = False

    def allgather(self, value, message=None):
        """Every rank's ``value`` (int64 array, in rank order) and, with a
        ``message``, the bytes of every rank's message (one uint8 array, in
        rank order; messages of ranks whose value is negative are empty).

        With a message, ``value`` is its size, or a negative flag (the message
        is then not sent). A message longer than :attr:`capacity` is sent
        through MPI's ``Allgatherv`` instead, in that exchange only. Without
        one, ``value`` is any integer, and the second result is None.
        """
        if self._window is None:
            raise RuntimeError("this shared-memory exchange was freed")
        if self._interrupted:
            raise RuntimeError(
                "an earlier wait at the ranks' shared-memory barrier was interrupted "
                "(KeyboardInterrupt, or an exception from a signal handler): the "
                "ranks no longer agree on where they are; end the MPI job and run "
                "it again"
            )
        side = self._exchanges % 2
        if message is not None:
            message = np.frombuffer(message, dtype=np.uint8)
            if message.size <= self.capacity:
                self._slots[side, self._rank, : message.size] = message
        self._headers[side, self._rank] = value
        self._exchanges += 1
        # The counter grows by one a rank, exchange after exchange (mod 2**32).
        target = (self._exchanges * self._n_ranks) & 0xFFFFFFFF
        self._window.Sync()  # this rank's slot, before it is counted arrived
        try:
            self._futex.arrive_and_wait(self._control, target, self.spin_seconds)
        except BaseException:
            self._interrupted = True  # counted as arrived, but returns no values
            raise
        self._window.Sync()  # every slot written before the last arrival
        values = self._headers[side].copy()
        if message is None:
            return values, None
        sizes = np.maximum(values, 0)
        received = np.empty(int(sizes.sum()), dtype=np.uint8)
        if sizes.max(initial=0) > self.capacity:
            # Every rank reads the same sizes, so all take this path together.
            self._comm.Allgatherv(
                message if values[self._rank] >= 0 else message[:0],
                [received, sizes, displacements(sizes), self._MPI.BYTE],
            )
            return values, received
        offset = 0
        for rank, size in enumerate(sizes):
            received[offset : offset + size] = self._slots[side, rank, :size]
            offset += size
        return values, received

    def free(self):
        """Release the window (collective). Using the exchange afterwards
        raises."""
        if self._window is not None:
            self._control = self._headers = self._slots = None
            self._window.Unlock_all()
            self._window.Free()
            self._window = None
