"""The compressor interface and the self-describing message header."""

import struct
from abc import ABC, abstractmethod

import numpy as np

from .._registry import ParameterIdentity

__all__ = ["Compressor", "MessageError"]

# Every message starts with: 2-byte magic, 1-byte dtype code, 1-byte parameter
# (the bit width for QSGD), and the vector length as uint32. Little-endian.
_HEADER = struct.Struct("<2sBBI")
_DTYPE_CODES = {np.dtype(np.float64): 0, np.dtype(np.float32): 1}
_CODE_DTYPES = {code: dtype for dtype, code in _DTYPE_CODES.items()}
#: The most values a sparse message (TopK's, Elias-coded QSGD's), whose bytes
#: do not bound its length (zeros take no bytes), may declare to a receiver
#: that passes no ``n_values``: 128 MiB of float64, so that a forged 20-byte
#: message cannot make it allocate gigabytes.
MAX_SPARSE_VALUES = 2**24


class MessageError(ValueError):
    """A message that is truncated, malformed, or not of the expected kind."""


class Compressor(ParameterIdentity, ABC):
    """Turns a gradient into the bytes a worker sends, and back.

    Subclasses implement :meth:`compress` and :meth:`decompress`. A message is
    self-describing: :meth:`decompress` needs nothing but its bytes, and
    ``len(message)`` is its exact size on the wire. Randomness comes only from the
    ``random_state`` passed to :meth:`compress`, never from a global state.

    A receiver that knows the vector's length (the model's size) passes it as
    ``n_values``: a message declaring any other length is then rejected before
    anything is allocated for it, so that no sender can make a receiver
    allocate what it declares, nor have a short vector broadcast into the sum.
    Without it, a message may declare only as many values as its bytes hold,
    or, for a sparse message, at most :data:`MAX_SPARSE_VALUES`.
    """

    #: Whether the workers' encoded vectors can be summed while compressed
    #: (by an allreduce): True exactly for a
    #: :class:`~sklearn_relu.compression.SummableCompressor`, which says so.
    summable = False
    #: Whether only the sum of the workers' vectors can be decoded (no
    #: self-describing per-worker message exists): only a summable
    #: compressor may say so.
    summed_only = False
    #: The two-byte tag that opens this compressor's messages.
    magic = b"??"
    #: Whether the decoded message is a sign (a unit step per coordinate)
    #: rather than a gradient: such a step follows the sign schedule.
    sign_units = False
    #: Whether ``E[C(g)] != g``: error feedback (``error_feedback=True``) is
    #: for such compressors.
    biased = False
    #: Whether :meth:`compress` keeps state from one step to the next (error
    #: feedback memory, momentum): each worker owns its own copy, and a fit
    #: that continues (``warm_start``, ``partial_fit``) restores it.
    stateful = False

    @abstractmethod
    def compress(self, vector, random_state=None):
        """Encode a 1-D float vector into a ``bytes`` message."""

    @abstractmethod
    def decompress(self, message, n_values=None):
        """Decode a message into a 1-D float array (the dtype it was sent in).

        ``n_values``, when given, is the length the receiver expects; a
        message that declares another raises :class:`MessageError`.
        """

    @abstractmethod
    def message_nbytes(self, n_values):
        """Exact size in bytes of the message for a vector of ``n_values``."""

    def variance_factor(self, n_values, n_workers=1):
        """``E||C(g) - g||^2 / ||g||^2`` that ``learning_rate="auto"`` plans for."""
        return 0.0

    def mean_of_sum(self, total, n_workers):
        """The mean of the workers' estimates from the sum of their decoded
        messages. A worker's gradient is its share of the batch's (scaled by its
        part of the rows), so the sum is already the mean."""
        return total

    # -- state a worker carries from step to step ---------------------------------
    def reset(self):
        """Forget the state of earlier steps (a new run starts)."""

    def get_state(self):
        """This worker's state as one 1-D float64 array (empty when stateless)."""
        return np.zeros(0)

    def set_state(self, state):
        """Continue from ``state``, an array :meth:`get_state` returned."""

    # -- identity (ParameterIdentity): the parameters, never the state ---------
    def _parameters(self):
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    # -- shared header handling -------------------------------------------------
    def _header(self, vector, param=0):
        try:
            code = _DTYPE_CODES[vector.dtype]
        except KeyError:
            raise TypeError(
                f"{type(self).__name__} compresses float64 or float32 vectors, "
                f"got dtype {vector.dtype}"
            ) from None
        return _HEADER.pack(self.magic, code, param, vector.shape[0])

    def _read_header(self, message, expected=None, tag=None, sparse=False):
        """Return ``(dtype, param, n_values, body)``; raise MessageError if bad,
        or if ``expected`` is not None and the declared length differs.
        ``tag`` is the message tag to expect when not :attr:`magic`.
        ``sparse``: the body need not hold every value, so with no
        ``expected`` the declared length is capped by
        :data:`MAX_SPARSE_VALUES` before the caller allocates it."""
        tag = self.magic if tag is None else tag
        buffer = memoryview(message).cast("B")
        if buffer.nbytes < _HEADER.size:
            raise MessageError(
                f"message of {buffer.nbytes} bytes is shorter than the "
                f"{_HEADER.size}-byte header"
            )
        magic, code, param, n_values = _HEADER.unpack_from(buffer)
        if magic != tag:
            raise MessageError(
                f"message tag {magic!r} is not a {type(self).__name__} message "
                f"(expected {tag!r})"
            )
        if code not in _CODE_DTYPES:
            raise MessageError(f"unknown dtype code {code} in message header")
        if expected is not None and n_values != expected:
            raise MessageError(
                f"{type(self).__name__} message declares {n_values} values, but "
                f"the receiver's model has {expected}"
            )
        if expected is None and sparse and n_values > MAX_SPARSE_VALUES:
            raise MessageError(
                f"{type(self).__name__} message declares {n_values} values, which "
                f"its {buffer.nbytes} bytes do not bound; without n_values a "
                f"receiver takes at most {MAX_SPARSE_VALUES}: pass n_values, the "
                "length it expects"
            )
        return _CODE_DTYPES[code], param, n_values, buffer[_HEADER.size :]


def _as_vector(vector):
    vector = np.asarray(vector)
    if vector.ndim != 1:
        raise ValueError(f"expected a 1-D vector, got shape {vector.shape}")
    if vector.dtype not in _DTYPE_CODES:
        vector = vector.astype(np.float64)
    if not np.all(np.isfinite(vector)):
        raise ValueError("cannot compress a vector containing NaN or infinity")
    return vector


HEADER_NBYTES = _HEADER.size
