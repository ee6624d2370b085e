"""Top-k sparsification: the k largest coordinates, as indices and values
(Stich et al., "Sparsified SGD with memory", 2018)."""

import math
import numbers

import numpy as np

from ._base import HEADER_NBYTES, Compressor, MessageError, _as_vector

__all__ = ["TopK"]

_INDEX = np.dtype("<u4")


class TopK(Compressor):
    """Send the ``k`` coordinates largest in magnitude: their indices (``uint32``)
    and values (the vector's dtype), ``k (4 + itemsize)`` bytes after the header.

    Biased (``||C(v) - v||^2 <= (1 - k / d) ||v||^2``): use it with
    ``error_feedback=True`` (:class:`ErrorFeedback`), which sends the rest later.
    Ties in magnitude keep the lower index.

    Parameters
    ----------
    k : int or float, default=0.1
        Coordinates sent: an integer ``>= 1`` (at most ``d``), or a fraction of
        ``d`` in ``(0, 1]`` (rounded up).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.compression import TopK
    >>> message = TopK(k=2).compress(np.array([0.5, -3.0, 0.0, 2.0]))
    >>> len(message)   # 8-byte header + 2 x (4-byte index + float64)
    32
    >>> TopK(k=2).decompress(message)
    array([ 0., -3.,  0.,  2.])
    """

    magic = b"RK"
    biased = True

    def __init__(self, k=0.1):
        if isinstance(k, bool) or not (
            (isinstance(k, numbers.Integral) and k >= 1)
            or (isinstance(k, numbers.Real) and 0 < k <= 1)
        ):
            raise ValueError(
                f"k must be an integer >= 1 or a fraction in (0, 1], got {k!r}"
            )
        self.k = k if isinstance(k, numbers.Integral) else float(k)

    def n_kept(self, n_values):
        """Coordinates sent from a vector of ``n_values``."""
        if isinstance(self.k, numbers.Integral):
            return min(int(self.k), n_values)
        return min(max(math.ceil(self.k * n_values), 1), n_values)

    def contraction(self, n_values):
        """``k / d``: top-k keeps at least that share of ``||v||^2``."""
        return self.n_kept(n_values) / max(n_values, 1)

    def select(self, vector):
        """Indices of the ``k`` largest ``|v_i|`` (lower index first in a tie), sorted."""
        order = np.argsort(-np.abs(vector), kind="stable")
        return np.sort(order[: self.n_kept(vector.shape[0])])

    def compress(self, vector, random_state=None):
        vector = _as_vector(vector)
        kept = self.select(vector)
        values = vector[kept].astype(vector.dtype.newbyteorder("<"))
        return self._header(vector) + kept.astype(_INDEX).tobytes() + values.tobytes()

    def decompress(self, message, n_values=None):
        dtype, _, n_values, body = self._read_header(message, n_values, sparse=True)
        entry = _INDEX.itemsize + dtype.itemsize
        if body.nbytes % entry:
            raise MessageError(
                f"TopK message body has {body.nbytes} bytes, not a whole number of "
                f"{entry}-byte entries"
            )
        k = body.nbytes // entry
        indices = np.frombuffer(body[: k * _INDEX.itemsize], dtype=_INDEX)
        values = np.frombuffer(body[k * _INDEX.itemsize :], dtype.newbyteorder("<"))
        if k and (indices[-1] >= n_values or np.any(np.diff(indices.astype(np.int64)) <= 0)):
            raise MessageError("TopK message indices are not increasing and in range")
        if not np.all(np.isfinite(values)):
            raise MessageError("TopK message contains NaN or infinity")
        vector = np.zeros(n_values, dtype=dtype)
        vector[indices] = values
        return vector

    def message_nbytes(self, n_values, dtype=np.float64):
        return HEADER_NBYTES + self.n_kept(n_values) * (
            _INDEX.itemsize + np.dtype(dtype).itemsize
        )
