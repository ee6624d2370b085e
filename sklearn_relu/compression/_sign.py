"""Signs of the gradient, one bit a coordinate: signSGD, Signum and the scaled
sign that error feedback sends (Bernstein et al., 2018; Karimireddy et al., 2019).
"""

import numbers

import numpy as np

from ._base import HEADER_NBYTES, Compressor, MessageError, _as_vector

__all__ = ["ScaledSign", "SignSGD", "Signum", "pack_signs", "unpack_signs"]


def pack_signs(vector):
    """One bit a coordinate, 1 for a negative value, least significant bit first;
    ``ceil(d / 8)`` bytes. Zero counts as positive: one bit has no third value."""
    return np.packbits(np.asarray(vector) < 0, bitorder="little").tobytes()


def unpack_signs(body, n_values, dtype=np.float64):
    """The ``+1.0`` / ``-1.0`` vector of ``n_values`` signs packed in ``body``."""
    expected = (n_values + 7) // 8
    if body.nbytes != expected:
        raise MessageError(
            f"sign message body has {body.nbytes} bytes, expected {expected} for "
            f"{n_values} signs"
        )
    bits = np.unpackbits(np.frombuffer(body, dtype=np.uint8), bitorder="little")
    if bits[n_values:].any():
        raise MessageError("sign message has bits set beyond its last coordinate")
    return (1 - 2 * bits[:n_values].astype(np.int8)).astype(dtype)


class SignSGD(Compressor):
    """Send the sign of each coordinate: one bit, ``ceil(d / 8)`` bytes.

    The message decodes to ``+1`` or ``-1`` per coordinate (zero is sent as
    ``+1``), whatever the gradient's size, so the workers' signs are combined by
    an aggregation (``"mean"`` or ``"majority"``) and the step is
    ``learning_rate * direction`` on the sign schedule of
    :class:`~sklearn_relu.ReLURegressor`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.compression import SignSGD
    >>> message = SignSGD().compress(np.array([0.5, -2.0, 0.0, -1e-9]))
    >>> len(message)   # 8-byte header + ceil(4 / 8) bytes
    9
    >>> SignSGD().decompress(message)
    array([ 1., -1.,  1., -1.])
    """

    magic = b"RS"
    #: The decoded message is a sign (unit per coordinate), not a gradient.
    sign_units = True
    biased = True

    def mean_of_sum(self, total, n_workers):
        """Each worker's message is a whole estimate (a sign): their mean."""
        return total / n_workers

    def compress(self, vector, random_state=None):
        vector = _as_vector(vector)
        return self._header(vector) + pack_signs(vector)

    def decompress(self, message, n_values=None):
        dtype, _, n_values, body = self._read_header(message, n_values)
        return unpack_signs(body, n_values, dtype)

    def message_nbytes(self, n_values):
        return HEADER_NBYTES + (n_values + 7) // 8


class Signum(SignSGD):
    """signSGD on the worker's momentum ``m = momentum m + (1 - momentum) g``.

    Each worker keeps its own ``m`` (it is this compressor's state, carried by
    ``warm_start`` and ``partial_fit``); the message is the sign of ``m``, as
    :class:`SignSGD` sends it.

    Parameters
    ----------
    momentum : float, default=0.9
        In ``[0, 1)``; 0 is signSGD.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.compression import Signum
    >>> c = Signum(momentum=0.5)
    >>> c.decompress(c.compress(np.array([1.0, -1.0])))
    array([ 1., -1.])
    >>> c.decompress(c.compress(np.array([-3.0, -3.0])))
    array([-1., -1.])
    >>> c.get_state()
    array([-1.25, -1.75])
    """

    stateful = True

    def __init__(self, momentum=0.9):
        if (
            not isinstance(momentum, numbers.Real)
            or isinstance(momentum, bool)
            or not 0 <= momentum < 1
        ):
            raise ValueError(f"momentum must be a float in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self._momentum = None

    def reset(self):
        self._momentum = None

    def get_state(self):
        return np.zeros(0) if self._momentum is None else self._momentum.astype(np.float64)

    def set_state(self, state):
        self._momentum = None if len(state) == 0 else np.array(state, dtype=np.float64)

    def compress(self, vector, random_state=None):
        vector = _as_vector(vector)
        if self._momentum is None:
            self._momentum = np.zeros(vector.shape[0])
        self._momentum *= self.momentum
        self._momentum += (1 - self.momentum) * vector
        return self._header(vector) + pack_signs(self._momentum)


class ScaledSign(Compressor):
    """``||v||_1 / d * sign(v)``: the signs and one float, their mean magnitude.

    What EF-signSGD sends (wrapped in
    :class:`~sklearn_relu.compression.ErrorFeedback`): the decoded vector is in
    gradient units, and ``||C(v) - v||^2 = (1 - ||v||_1^2 / (d ||v||^2)) ||v||^2``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.compression import ScaledSign
    >>> message = ScaledSign().compress(np.array([3.0, -1.0, 0.5, -0.5]))
    >>> len(message)   # 8-byte header + one float64 + 1 byte of signs
    17
    >>> ScaledSign().decompress(message)
    array([ 1.25, -1.25,  1.25, -1.25])
    """

    magic = b"RV"
    biased = True

    def contraction(self, n_values):
        """``||v||_1^2 / (d ||v||^2)`` for Gaussian-like ``v``: ``2 / pi``
        (at worst ``1 / d``, all of ``v`` in one coordinate)."""
        return 2 / np.pi

    def compress(self, vector, random_state=None):
        vector = _as_vector(vector)
        d = max(vector.shape[0], 1)
        scale = np.array(np.abs(vector).sum(dtype=np.float64) / d, dtype=vector.dtype)
        little = scale.astype(vector.dtype.newbyteorder("<"))
        return self._header(vector) + little.tobytes() + pack_signs(vector)

    def decompress(self, message, n_values=None):
        dtype, _, n_values, body = self._read_header(message, n_values)
        if body.nbytes < dtype.itemsize:
            raise MessageError("ScaledSign message is too short for its scale")
        scale = np.frombuffer(body[: dtype.itemsize], dtype=dtype.newbyteorder("<"))[0]
        if not (np.isfinite(scale) and scale >= 0):
            raise MessageError(f"ScaledSign message has scale {scale}")
        return dtype.type(scale) * unpack_signs(body[dtype.itemsize :], n_values, dtype)

    def message_nbytes(self, n_values, dtype=np.float64):
        return HEADER_NBYTES + np.dtype(dtype).itemsize + (n_values + 7) // 8
