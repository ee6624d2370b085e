"""QSGD: stochastic quantization of a gradient to ``s`` levels (Alistarh et al.)."""

import math
import numbers
import struct

import numpy as np

from ._base import HEADER_NBYTES, Compressor, MessageError, _as_vector
from ._bitpack import pack_signed, packed_nbytes, unpack_signed
from ._elias import decode_sparse_levels, encode_sparse_levels

__all__ = ["QSGD", "check_quantizer_params", "levels_for_bits"]

_BUCKET = struct.Struct("<I")
_COUNT = struct.Struct("<I")
_EXPONENT = struct.Struct("<h")
_MIN_BITS, _MAX_BITS = 2, 16
# Message tag of each wire format; a message says which one it is. A vector
# whose norms fall outside float32's normal range travels under the second
# tag, with a power-of-two exponent that scales every norm.
_MAGICS = {"packed": b"RQ", "elias": b"RE"}
_SCALED_MAGICS = {"packed": b"Rq", "elias": b"Re"}
_ENCODINGS = {magic: (encoding, False) for encoding, magic in _MAGICS.items()}
_ENCODINGS.update(
    {magic: (encoding, True) for encoding, magic in _SCALED_MAGICS.items()}
)
# Any float64 norm, scaled into [0.5, 1), needs an exponent in this range.
_MAX_EXPONENT = 1100


def levels_for_bits(bits):
    """Number of quantization levels ``s = 2**(bits-1) - 1``.

    One bit carries the sign and ``bits - 1`` bits the magnitude level in ``[0, s]``.

    >>> levels_for_bits(8), levels_for_bits(2)
    (127, 1)
    """
    return 2 ** (bits - 1) - 1


def _check_bits(bits):
    if (
        not isinstance(bits, numbers.Integral)
        or isinstance(bits, bool)
        or not _MIN_BITS <= bits <= _MAX_BITS
    ):
        raise ValueError(
            f"bits must be an integer in [{_MIN_BITS}, {_MAX_BITS}] (one sign bit plus "
            f"bits-1 magnitude bits), got {bits!r}"
        )


# The bucket size travels as a uint32.
_MAX_BUCKET_SIZE = 2**32 - 1


def check_quantizer_params(bits, bucket_size, encoding):
    """Raise ``ValueError`` for a bad QSGD ``bits``, ``bucket_size`` or ``encoding``.

    The estimator checks them whatever its solver, so that a bad value is
    reported even where it is not used yet; ``bits=None`` skips ``bits`` (a
    solver that reads it with another range checked it already).
    """
    if bits is not None:
        _check_bits(bits)
    _check_bucket_size(bucket_size)
    if encoding not in _MAGICS:
        raise ValueError(f"encoding must be one of {sorted(_MAGICS)}, got {encoding!r}")


def _check_bucket_size(bucket_size):
    if bucket_size is None:
        return
    if (
        not isinstance(bucket_size, numbers.Integral)
        or isinstance(bucket_size, bool)
        or not 1 <= bucket_size <= _MAX_BUCKET_SIZE
    ):
        raise ValueError(
            f"bucket_size must be None or a positive integer below 2**32 (it "
            f"travels as a uint32), got {bucket_size!r}"
        )


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_TINY = float(np.finfo(np.float32).tiny)


def _norm_exponent(magnitude, norms):
    """The power of two that the norms are divided by before they travel as
    float32: 0 when every nonzero norm is a normal float32 (nearly always),
    else that of the largest entry, so that vectors of any finite float64
    magnitude (1e-300, 1e300) keep float32's precision in their norms."""
    nonzero = norms[norms > 0]
    if nonzero.size == 0 or (
        nonzero.max() <= _FLOAT32_MAX and nonzero.min() >= _FLOAT32_TINY
    ):
        return 0
    return int(np.frexp(magnitude.max())[1])


def _bucket_norms(magnitude, starts):
    """Euclidean norm of each bucket, in float64.

    Each bucket is divided by its largest entry before squaring, so that squares
    of tiny entries do not underflow to a zero norm (which would quantize a nonzero
    vector to zeros, a biased result) and squares of huge ones do not overflow.
    """
    lengths = np.diff(np.append(starts, magnitude.shape[0]))
    peak = np.maximum.reduceat(magnitude, starts)
    divisor = np.repeat(np.where(peak > 0, peak, 1.0), lengths)
    with np.errstate(over="ignore"):
        return peak * np.sqrt(np.add.reduceat((magnitude / divisor) ** 2, starts))


def _round_up_float32(values):
    """The smallest float32 >= each value, so that ``|v_i| / norm <= 1`` holds."""
    rounded = values.astype(np.float32)
    low = rounded.astype(np.float64) < values
    rounded[low] = np.nextafter(rounded[low], np.float32(np.inf))
    return rounded


class QSGD(Compressor):
    """Unbiased stochastic quantization to ``s = 2**(bits-1) - 1`` levels.

    Each bucket of ``bucket_size`` consecutive coordinates is sent as its Euclidean
    norm (a float32, rounded up) followed by, for every coordinate, one sign bit and
    a ``bits - 1``-bit level ``l`` in ``[0, s]``; the coordinate decodes to
    ``norm * sign * l / s``. The level is ``floor(|v_i| s / norm)`` or one more,
    chosen at random so that the expectation is exactly ``v_i``. A vector whose
    norms fall outside float32's normal range (any finite float64 magnitude,
    1e-300 or 1e300) is sent with its norms divided by a power of two, carried
    as a 2-byte exponent under its own message tag: the same precision, and
    still unbiased.

    With ``encoding="elias"`` the levels travel as QSGD's sparse code instead
    (QSGD Section 3.2): for each nonzero level the Elias-omega code of the gap to
    it, a sign bit and the Elias-omega code of ``|l|``. At few bits most levels
    are zero and the message shrinks far below ``d * bits`` bits; its expected
    length is bounded by QSGD's Theorem 3.2
    (:func:`~sklearn_relu.compression.theorem_3_2_bits`).

    Parameters
    ----------
    bits : int, default=8
        Bits per coordinate, in ``[2, 16]``.
    bucket_size : int or None, default=None
        Coordinates sharing one norm. ``None`` quantizes the whole vector with a
        single norm, as the paper does.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.compression import QSGD
    >>> q = QSGD(bits=2)
    >>> message = q.compress(np.array([3.0, -4.0, 0.0]), random_state=0)
    >>> len(message)  # 12-byte header, one float32 norm, 3 coordinates x 2 bits
    17
    >>> q.decompress(message)  # each coordinate is 0 or +-||v|| = +-5 at 2 bits
    array([ 0., -5.,  0.])
    >>> sparse = QSGD(bits=2, encoding="elias")
    >>> len(sparse.compress(np.eye(4000)[7], random_state=0))  # vs 1020 packed
    22
    """

    def __init__(self, bits=8, bucket_size=None, encoding="packed"):
        _check_bits(bits)
        check_quantizer_params(bits, bucket_size, encoding)
        self.bits = int(bits)
        self.bucket_size = None if bucket_size is None else int(bucket_size)
        self.encoding = encoding

    @property
    def magic(self):
        """The tag that opens this compressor's messages (one per encoding)."""
        return _MAGICS[self.encoding]

    @property
    def levels(self):
        """The number of nonzero magnitude levels ``s``."""
        return levels_for_bits(self.bits)

    def variance_factor(self, n_values, n_workers=1):
        """QSGD's bound ``min(d/s^2, sqrt(d)/s)`` on ``E||Q(v) - v||^2 / ||v||^2``.

        ``d`` is the bucket length (the whole vector when ``bucket_size`` is None).
        """
        d = n_values if self.bucket_size is None else min(self.bucket_size, n_values)
        s = self.levels
        return min(d / s**2, math.sqrt(d) / s)

    # -- the quantizer itself, separate from its encoding ------------------------
    def _bucket_starts(self, n_values):
        size = n_values if self.bucket_size is None else self.bucket_size
        return np.arange(0, n_values, max(size, 1))

    def quantize(self, vector, random_state=None):
        """Draw ``(norms, levels)``: bucket norms and signed integer levels.

        Parameters
        ----------
        vector : ndarray of shape (d,)
        random_state : int, numpy.random.Generator or None
            Source of the rounding randomness.

        Returns
        -------
        norms : ndarray of float64, shape (n_buckets,)
            Each a float32 times a power of two common to the vector (the
            values a message carries), rounded up from the exact norm.
        levels : ndarray of int32, shape (d,), each in ``[-s, s]``
        """
        norms, exponent, levels = self._quantize(_as_vector(vector), random_state)
        return np.ldexp(norms.astype(np.float64), exponent), levels

    def _quantize(self, vector, random_state):
        """``(float32 norms, exponent, levels)``: the norms are ``norms * 2**exponent``."""
        rng = np.random.default_rng(random_state)
        d, s = vector.shape[0], self.levels
        starts = self._bucket_starts(d)
        if d == 0:
            return np.zeros(0, np.float32), 0, np.zeros(0, np.int32)
        magnitude = np.abs(vector, dtype=np.float64)
        norms = _bucket_norms(magnitude, starts)
        exponent = _norm_exponent(magnitude, norms)
        if exponent:
            if vector.dtype == np.float32 and np.any(norms > _FLOAT32_MAX):
                # A float32 vector decodes to float32, where a coordinate
                # of +-norm cannot be represented.
                raise FloatingPointError(
                    f"a bucket norm {norms.max():.3g} of a float32 vector exceeds "
                    f"the float32 range ({_FLOAT32_MAX:.3g})"
                )
            # Powers of two scale exactly: the levels are drawn on the
            # scaled vector, whose norms are in float32's range.
            magnitude = np.ldexp(magnitude, -exponent)
            norms = _bucket_norms(magnitude, starts)
        norms = _round_up_float32(norms)
        per_coord = np.repeat(norms.astype(np.float64), np.diff(np.append(starts, d)))
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = np.where(per_coord > 0, magnitude / per_coord, 0.0) * s
        floor = np.floor(scaled)
        levels = floor + (rng.random(d) < (scaled - floor))
        np.minimum(levels, s, out=levels)
        levels = levels.astype(np.int32)
        levels[vector < 0] *= -1
        return norms, exponent, levels

    def dequantize(self, norms, levels, dtype=np.float64):
        """The vector ``norm * level / s`` that a message decodes to."""
        d = levels.shape[0]
        starts = self._bucket_starts(d)
        per_coord = np.repeat(norms.astype(np.float64), np.diff(np.append(starts, d)))
        return (per_coord * (levels / self.levels)).astype(dtype, copy=False)

    # -- the wire format ----------------------------------------------------------
    def n_buckets(self, n_values):
        # Arithmetic, not len(self._bucket_starts(...)): a malformed header may
        # claim billions of values, and the size check that rejects it must not
        # allocate an array that large first.
        if n_values == 0:
            return 0
        size = n_values if self.bucket_size is None else self.bucket_size
        return -(-n_values // size)

    def message_nbytes(self, n_values):
        """Size of the message for a vector of ``n_values``.

        Exact for ``encoding="packed"``, but for the rare vector whose norms
        fall outside float32's normal range (beyond about 1e38 or below 1e-38),
        whose message carries 2 more bytes: a power-of-two exponent. An
        Elias-coded message's size depends on the vector; for it this is the
        largest size any vector can produce (every level nonzero at the
        longest codes), a bound for buffers.
        """
        fixed = HEADER_NBYTES + _BUCKET.size + 4 * self.n_buckets(n_values)
        if self.encoding == "packed":
            return fixed + packed_nbytes(n_values, self.bits)
        longest = _omega_length(max(n_values, 1)) + 1 + _omega_length(self.levels)
        return fixed + _COUNT.size + (n_values * longest + 7) // 8

    def compress(self, vector, random_state=None):
        vector = _as_vector(vector)
        norms, exponent, levels = self._quantize(vector, random_state)
        header = self._header(vector, self.bits)
        parts = [header, _BUCKET.pack(self.bucket_size or 0)]
        if exponent:
            parts[0] = _SCALED_MAGICS[self.encoding] + header[2:]
            parts.append(_EXPONENT.pack(exponent))
        if self.encoding == "elias":
            payload, n_nonzero = encode_sparse_levels(levels)
            parts.append(_COUNT.pack(n_nonzero))
        else:
            payload = pack_signed(levels, self.bits)
        parts += [norms.astype("<f4").tobytes(), payload]
        return b"".join(parts)

    def decompress(self, message, n_values=None):
        encoding, scaled = _ENCODINGS.get(
            bytes(memoryview(message).cast("B")[:2]), (self.encoding, False)
        )  # an unknown tag: _read_header names it
        tag = (_SCALED_MAGICS if scaled else _MAGICS)[encoding]
        dtype, bits, n_values, body = self._read_header(
            message, n_values, tag, sparse=encoding == "elias"
        )
        if not _MIN_BITS <= bits <= _MAX_BITS:
            raise MessageError(f"QSGD message declares bits={bits}, outside [2, 16]")
        if body.nbytes < _BUCKET.size:
            raise MessageError("QSGD message is truncated before its bucket size")
        (bucket_size,) = _BUCKET.unpack_from(body)
        body = body[_BUCKET.size :]
        exponent = 0
        if scaled:
            if body.nbytes < _EXPONENT.size:
                raise MessageError("QSGD message is truncated before its exponent")
            (exponent,) = _EXPONENT.unpack_from(body)
            if not 0 < abs(exponent) <= _MAX_EXPONENT:
                raise MessageError(
                    f"QSGD message declares norm exponent {exponent}, outside "
                    f"[-{_MAX_EXPONENT}, {_MAX_EXPONENT}] or zero"
                )
            body = body[_EXPONENT.size :]
        sender = QSGD(bits=bits, bucket_size=bucket_size or None, encoding=encoding)
        if encoding == "elias":
            norms, levels = sender._read_elias(body, n_values)
        else:
            norms, levels = sender._read_packed(body, n_values, scaled)
        if not (np.all(np.isfinite(norms)) and np.all(norms >= 0)):
            raise MessageError("QSGD message carries a negative or non-finite norm")
        # A corrupted exponent can push a norm beyond float64 (inf, and inf
        # times a zero level is NaN): caught below as a vector that is not
        # finite, not warned about here.
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.ldexp(norms.astype(np.float64), exponent)
            vector = sender.dequantize(norms, levels, dtype=dtype)
        if not np.all(np.isfinite(vector)):
            raise MessageError(
                f"QSGD message decodes to values beyond the {dtype} range"
            )
        return vector

    def _read_packed(self, body, n_values, scaled):
        """``(float32 norms, levels)`` of a packed body (after the bucket size
        and exponent)."""
        expected = self.message_nbytes(n_values) + scaled * _EXPONENT.size
        size = HEADER_NBYTES + _BUCKET.size + scaled * _EXPONENT.size + body.nbytes
        if size != expected:
            raise MessageError(
                f"QSGD message has {size} bytes, expected {expected} for "
                f"{n_values} values at {self.bits} bits"
            )
        offset = 4 * self.n_buckets(n_values)
        norms = np.frombuffer(body[:offset], dtype="<f4")
        return norms, unpack_signed(body[offset:], n_values, self.bits)

    def _read_elias(self, body, n_values):
        """``(float32 norms, levels)`` of an Elias-coded body (after the bucket
        size and exponent)."""
        n_norms = self.n_buckets(n_values)
        offset = _COUNT.size + 4 * n_norms
        if body.nbytes < offset:
            raise MessageError(
                f"Elias-coded QSGD message is truncated: {body.nbytes} bytes after "
                f"its bucket size, its count and {n_norms} norms need {offset}"
            )
        (n_nonzero,) = _COUNT.unpack_from(body)
        norms = np.frombuffer(body[_COUNT.size : offset], dtype="<f4")
        try:
            levels = decode_sparse_levels(body[offset:], n_nonzero, n_values)
        except ValueError as error:
            raise MessageError(f"Elias-coded QSGD message: {error}") from None
        if levels.size and np.abs(levels).max() > self.levels:
            raise MessageError(
                f"Elias-coded QSGD message has a level above s={self.levels}"
            )
        return norms, levels


def _omega_length(value):
    """Length in bits of the Elias-omega code of a positive integer."""
    length = 1
    while value > 1:
        width = int(value).bit_length()
        length += width
        value = width - 1
    return length
