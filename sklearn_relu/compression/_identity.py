"""The exact compressor: the vector's own floats, as plain SGD sends them."""

import numpy as np

from ._base import HEADER_NBYTES, MessageError, _as_vector
from ._summable import SummableCompressor

__all__ = ["Identity"]


class Identity(SummableCompressor):
    """Send the gradient uncompressed, in its own float dtype.

    Float vectors can also be summed as they are (an allreduce of the
    gradients: what plain distributed SGD runs), so it is a
    :class:`SummableCompressor` that needs no scale.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.compression import Identity
    >>> message = Identity().compress(np.array([0.5, -2.0]))
    >>> len(message)  # 8-byte header + 2 float64
    24
    >>> Identity().decompress(message)
    array([ 0.5, -2. ])
    """

    magic = b"RI"

    def variance_factor(self, n_values, n_workers=1):
        """Exact: no added variance."""
        return 0.0

    def encode(self, vector, scale, n_workers, random_state=None):
        return np.ascontiguousarray(vector)

    def decode_sum(self, total, scale, n_workers, dtype=None):
        return total if dtype is None else total.astype(dtype, copy=False)

    def failed_summand(self, n_values, dtype=np.float64):
        """NaN: a sum with a failed worker's vector is not finite."""
        return np.full(n_values, np.nan, dtype=dtype)

    def sum_failed(self, total):
        """Whether a worker failed (or the gradients overflowed)."""
        return not np.all(np.isfinite(total))

    def compress(self, vector, random_state=None):
        vector = _as_vector(vector)
        little = vector.astype(vector.dtype.newbyteorder("<"), copy=False)
        return self._header(vector) + little.tobytes()

    def decompress(self, message, n_values=None):
        dtype, _, n_values, body = self._read_header(message, n_values)
        if body.nbytes != n_values * dtype.itemsize:
            raise MessageError(
                f"Identity message body has {body.nbytes} bytes, expected "
                f"{n_values * dtype.itemsize} for {n_values} {dtype} values"
            )
        vector = np.frombuffer(body, dtype=dtype.newbyteorder("<")).astype(dtype)
        if not np.all(np.isfinite(vector)):
            raise MessageError("Identity message contains NaN or infinity")
        return vector

    def message_nbytes(self, n_values, dtype=np.float64):
        return HEADER_NBYTES + n_values * np.dtype(dtype).itemsize
