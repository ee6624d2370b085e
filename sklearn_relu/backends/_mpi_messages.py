"""The step of the MPI topologies that move every worker's message:
``"allgather"`` and ``"master-worker"``.

Part of :class:`~sklearn_relu.backends.MPIBackend`, which inherits
:class:`MessageSteps`: a rank computes its compressor's message, the ranks
agree on the messages' sizes (a rank that failed says -1), and then

- ``"allgather"``: every rank receives every message (``Iallgatherv``),
  decodes them in rank order and steps its own replica of the model;
- ``"master-worker"``: rank 0 receives them (``Igatherv``), decodes, sums,
  steps and broadcasts the new model (or, for a majority vote, the voted
  signs, one bit a coordinate).

With ``wait="sleep"`` one exchange through shared memory carries both the
sizes and the messages.
"""

import time

import numpy as np

from .._worker import ShardWorker
from ..compression._sign import pack_signs, unpack_signs
from ._mpi_errors import RemoteWorkerError
from ._shared_memory import displacements as _displacements

__all__ = ["MessageSteps"]


class MessageSteps:
    """The message topologies' step, for :class:`MPIBackend` (which provides
    the communicator, the waiting policy, the worker and the record)."""

    def _message_step(self, params, update):
        """:meth:`Backend.step` on ``"allgather"`` and ``"master-worker"``."""
        start = time.perf_counter()
        message, error = self._local(ShardWorker.gradient_message, params)
        computed = time.perf_counter()
        self._before_collective()
        master = self._topology == "master-worker"
        sizes, received = self._exchange_messages(message, error, master)
        displacements = _displacements(sizes)
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

    def _exchange_messages(self, message, error, master):
        """(every rank's message size, the messages laid end to end: on every
        rank, or on rank 0 only when ``master``; None elsewhere). Raises on
        every rank when one failed."""
        comm, MPI = self._comm, self._MPI
        nbytes = 0 if message is None else len(message)
        if self._exchange is not None:
            # One exchange carries both the sizes and the messages.
            sizes, received = self._exchange.allgather(
                -1 if error else nbytes, b"" if message is None else message
            )
            return self._raise_failures(sizes, error), received
        sizes = self._agree_on_status(nbytes, error)
        sendbuf = np.frombuffer(message, dtype=np.uint8)
        receiving = not master or comm.Get_rank() == 0
        received = np.empty(int(sizes.sum()), dtype=np.uint8) if receiving else None
        recvspec = (
            [received, sizes, _displacements(sizes), MPI.BYTE] if receiving else None
        )
        if master:
            self._wait(comm.Igatherv(sendbuf, recvspec, root=0))
        else:
            self._wait(comm.Iallgatherv(sendbuf, recvspec))
        return sizes, received

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
