"""Every rank's message through memory shared by the ranks of one host.

The exchange of ``MPIBackend(wait="sleep")``: each rank writes one integer
(a message's size, or -1 for a failure) and its message into its own slot of a
window from ``MPI_Win_allocate_shared``, then waits at a barrier whose waiters
sleep in the kernel (``_futex.c``) until the last rank arrives. Every rank then
reads every slot. One exchange replaces the two collectives of an
``MPIBackend`` step (the status and size exchange, and the ``Allgatherv``), and
no rank polls: a rank waiting for another leaves its core to it.

Two sets of slots alternate, exchange by exchange. A rank writes set ``k % 2``
in exchange ``k`` only after exchange ``k - 1`` completed, so after every rank
arrived there, which each did after reading exchange ``k - 2``'s set: no slot
is overwritten while another rank may still read it, without a second barrier.
"""

import numpy as np

__all__ = ["SharedExchange", "futex_module", "shared_exchange"]

_ALIGN = 64


def futex_module():
    """The compiled barrier (Linux), or None where it was not built."""
    try:
        from . import _futex
    except ImportError:
        return None
    return _futex


#: One exchange a communicator, reused fit after fit: ``backend="mpi"`` makes a
#: new MPIBackend for every fit, and a window cannot be freed when a fit ends
#: (``MPI_Win_free`` is collective, and after an error on one rank the others
#: may never get there). (communicator, exchange) pairs, by the communicator
#: object's identity (it is kept alive here).
_EXCHANGES = []


def shared_exchange(comm, MPI, capacity, spin_seconds):
    """The exchange of ``comm`` with slots of at least ``capacity`` bytes
    (collective: every rank of ``comm`` calls it at the same point).

    The one made for ``comm`` before is kept if its slots are large enough;
    otherwise it is freed and a larger one made.
    """
    for index, (known, exchange) in enumerate(_EXCHANGES):
        if known is comm:
            if exchange.capacity >= capacity:
                exchange.spin_seconds = spin_seconds
                return exchange
            exchange.free()
            del _EXCHANGES[index]
            break
    exchange = SharedExchange(comm, MPI, capacity, spin_seconds)
    _EXCHANGES.append((comm, exchange))
    return exchange


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
        buffer, _ = self._window.Shared_query(0)
        memory = np.frombuffer(buffer, dtype=np.uint8)
        skip = -memory.ctypes.data % _ALIGN
        memory = memory[skip : skip + nbytes - _ALIGN]
        if self._rank == 0:
            memory[: control + headers] = 0
        comm.Barrier()  # the counters are zero before anyone arrives
        self._control = memory[:control]
        self._headers = memory[control : control + headers].view(np.int64)[
            : 2 * n_ranks
        ].reshape(2, n_ranks)
        self._slots = memory[control + headers :].reshape(2, n_ranks, self.capacity)
        self._exchanges = 0
        self._n_ranks = n_ranks

    def allgather(self, value, message=b""):
        """Every rank's ``value`` (int64 array, in rank order) and the bytes of
        every rank's ``message`` (one uint8 array, in rank order; messages of
        ranks whose value is negative are empty).

        ``value`` is this rank's message size, or a negative flag (the message
        is then not sent). A message longer than :attr:`capacity` is sent
        through MPI's ``Allgatherv`` instead, in that exchange only.
        """
        message = np.frombuffer(message, dtype=np.uint8)
        side = self._exchanges % 2
        fits = message.size <= self.capacity
        if fits:
            self._slots[side, self._rank, : message.size] = message
        self._headers[side, self._rank] = value
        self._exchanges += 1
        # The counter grows by one a rank, exchange after exchange (mod 2**32).
        target = (self._exchanges * self._n_ranks) & 0xFFFFFFFF
        self._futex.arrive_and_wait(self._control, target, self.spin_seconds)
        values = self._headers[side].copy()
        sizes = np.maximum(values, 0)
        received = np.empty(int(sizes.sum()), dtype=np.uint8)
        if sizes.max(initial=0) > self.capacity:
            # Every rank reads the same sizes, so all take this path together.
            displacements = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            self._comm.Allgatherv(
                message if values[self._rank] >= 0 else message[:0],
                [received, sizes, displacements, self._MPI.BYTE],
            )
            return values, received
        offset = 0
        for rank, size in enumerate(sizes):
            received[offset : offset + size] = self._slots[side, rank, :size]
            offset += size
        return values, received

    def free(self):
        """Release the window (collective)."""
        if self._window is not None:
            self._window.Free()
            self._window = None
