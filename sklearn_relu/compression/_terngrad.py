"""TernGrad: one scale and a ternary level a coordinate (Wen et al., 2017)."""

import math

import numpy as np

from ._base import HEADER_NBYTES, Compressor, MessageError, _as_vector
from ._bitpack import pack_signed, packed_nbytes, unpack_signed

__all__ = ["TernGrad"]


class TernGrad(Compressor):
    """Send ``s * sign(g_i) * b_i`` with ``s = max_i |g_i|`` and ``b_i`` a coin
    that is 1 with probability ``|g_i| / s``: unbiased, two bits a coordinate.

    The message is the header, ``s`` in the vector's dtype and the levels
    ``{-1, 0, +1}`` packed at 2 bits each (sign and magnitude):
    ``ceil(2 d / 8)`` bytes. ``E||Q(g) - g||^2 = s ||g||_1 - ||g||^2``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.compression import TernGrad
    >>> message = TernGrad().compress(np.array([2.0, -2.0, 0.0, 1.0]), random_state=0)
    >>> len(message)   # 8-byte header + one float64 + 4 coordinates at 2 bits
    17
    >>> TernGrad().decompress(message)
    array([ 2., -2.,  0.,  2.])
    """

    magic = b"RT"

    def variance_factor(self, n_values, n_workers=1):
        """``s ||g||_1 / ||g||^2 - 1`` for a gradient whose coordinates spread
        like Gaussian noise: ``s`` about ``sigma sqrt(2 ln(2 d))`` and
        ``||g||_1 / ||g||^2`` about ``sqrt(2 / pi) / sigma``."""
        d = max(int(n_values), 1)
        return max(math.sqrt(2 * math.log(2 * d)) * math.sqrt(2 / math.pi) - 1, 0.0)

    def compress(self, vector, random_state=None):
        vector = _as_vector(vector)
        magnitude = np.abs(vector)
        scale = np.array(magnitude.max() if vector.size else 0.0, dtype=vector.dtype)
        levels = np.zeros(vector.shape[0], dtype=np.int32)
        if scale > 0:
            rng = np.random.default_rng(random_state)
            keep = rng.random(vector.shape[0]) < magnitude / scale
            levels[keep] = np.where(vector[keep] < 0, -1, 1)
        little = scale.astype(vector.dtype.newbyteorder("<"))
        return self._header(vector) + little.tobytes() + pack_signed(levels, 2)

    def decompress(self, message, n_values=None):
        dtype, _, n_values, body = self._read_header(message, n_values)
        expected = dtype.itemsize + packed_nbytes(n_values, 2)
        if body.nbytes != expected:
            raise MessageError(
                f"TernGrad message body has {body.nbytes} bytes, expected {expected} "
                f"for {n_values} {dtype} values"
            )
        scale = np.frombuffer(body[: dtype.itemsize], dtype=dtype.newbyteorder("<"))[0]
        if not (np.isfinite(scale) and scale >= 0):
            raise MessageError(f"TernGrad message has scale {scale}")
        levels = unpack_signed(body[dtype.itemsize :], n_values, 2)
        return dtype.type(scale) * levels.astype(dtype)

    def message_nbytes(self, n_values, dtype=np.float64):
        return HEADER_NBYTES + np.dtype(dtype).itemsize + packed_nbytes(n_values, 2)
