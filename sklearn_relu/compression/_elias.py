"""Elias-omega codes and QSGD's sparse encoding of a quantized vector
(docs/theory.rst, "QSGD").

QSGD (Alistarh et al., Section 3.2) sends a quantized vector as its norm, then for
each nonzero coordinate the Elias-coded gap to it, one sign bit and the Elias code
of its level ``s * xi_i``. At low precision most levels are zero (at most
``s (s + sqrt(d))`` are nonzero in expectation, Lemma 3.1), so the message is far
shorter than ``d`` fixed-width fields: Theorem 3.2 bounds its expected length.

Two implementations of the sparse code, giving the same bytes and levels:

- a compiled loop in the optional C extension (``_kernels.c``, its Elias
  section), which reads or writes each code once; :data:`ELIAS_KERNEL` is
  ``"c"`` when it is built;
- the NumPy path (:func:`encode_sparse_levels_numpy`,
  :func:`decode_sparse_levels_numpy`), the fallback and the reference the
  tests compare the loop against. Encoding builds all codes at once; decoding
  first decodes "a code starting at bit ``p``" for every ``p`` at once, then
  follows the chain of codes from bit 0. That table costs time and memory in
  proportion to the message's bits, which is why the loop exists: at 16 bits
  and d = 1e6 the NumPy path takes seconds and hundreds of MiB.
"""

import math

import numpy as np

try:
    from .. import _kernels
except ImportError:  # the optional extension was not built: the NumPy path
    _kernels = None

__all__ = [
    "ELIAS_KERNEL",
    "omega_encode",
    "omega_decode",
    "encode_sparse_levels",
    "decode_sparse_levels",
    "encode_sparse_levels_numpy",
    "decode_sparse_levels_numpy",
    "theorem_3_2_bits",
]

# An extension built from an older source lacks these functions: NumPy then.
_c_encode = getattr(_kernels, "elias_encode_sparse", None)
_c_decode = getattr(_kernels, "elias_decode_sparse", None)
#: The sparse code's implementation in use: ``"c"`` (compiled loop) or ``"numpy"``.
ELIAS_KERNEL = "c" if _c_encode is not None and _c_decode is not None else "numpy"

# Codes are assembled in uint64 words, so every group read while decoding must
# fit one: values up to 2**32 need groups of at most 33 bits.
_MAX_VALUE = 2**32
_MAX_GROUPS = 6  # omega groups of any value < 2**32: 32 -> 5 -> 2 -> 1 bits, + "0"


def _bit_length(values):
    """Exact bit length of positive integers below 2**53."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


def _omega_codes(values):
    """``(codes, lengths)``: each value's omega code as the low bits of a uint64.

    The code is read most significant bit first. Built back to front as the
    definition goes: a final ``0``, then, while ``N > 1``, the binary form of
    ``N`` in front and ``N <- bit_length(N) - 1``.
    """
    current = np.asarray(values, dtype=np.int64).copy()
    codes = np.zeros(current.shape, dtype=np.uint64)
    lengths = np.ones(current.shape, dtype=np.int64)
    active = current > 1
    while active.any():
        value = current[active]
        width = _bit_length(value)
        codes[active] |= value.astype(np.uint64) << lengths[active].astype(np.uint64)
        lengths[active] += width
        current[active] = width - 1
        active = current > 1
    return codes, lengths


def _codes_to_bits(codes, lengths):
    """Concatenate variable-length codes into one array of 0/1 bytes."""
    total = int(lengths.sum())
    entry = np.repeat(np.arange(codes.shape[0]), lengths)
    starts = np.cumsum(lengths) - lengths
    shift = (lengths[entry] - 1 - (np.arange(total) - starts[entry])).astype(np.uint64)
    return ((codes[entry] >> shift) & np.uint64(1)).astype(np.uint8)


def _pack(bits):
    """Pack 0/1 bytes MSB first, padding the last byte with ones.

    Every code ends in a 0, so ones cannot be the tail of a code: a message
    whose count of codes was altered leaves a tail that is not all ones (one
    fewer) or runs out of bits (one more), and the decoder notices either way.
    """
    padding = -bits.shape[0] % 8
    return np.packbits(np.concatenate([bits, np.ones(padding, np.uint8)])).tobytes()


def omega_encode(values):
    """Elias-omega code of positive integers, concatenated, as packed bytes.

    Parameters
    ----------
    values : array-like of int, each in ``[1, 2**32]``

    Returns
    -------
    packed : bytes
        The codes, most significant bit first, padded with ones to a whole byte.
    n_bits : int
        Length of the code before padding.

    Examples
    --------
    >>> packed, n_bits = omega_encode([1, 2, 17])
    >>> n_bits  # "0", "10 0", "10 100 10001 0"
    15
    >>> omega_decode(packed, 3).tolist()
    [1, 2, 17]
    """
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < 1 or values.max() > _MAX_VALUE):
        raise ValueError(f"Elias-omega codes positive integers up to {_MAX_VALUE}")
    bits = _codes_to_bits(*_omega_codes(values))
    return _pack(bits), int(bits.shape[0])


def _decode_table(bits):
    """For every start position ``p``: the value of an omega code read from ``p``
    and the position just after it; value 0 where no valid code starts at ``p``."""
    n_bits = bits.shape[0]
    # 64-bit big-endian windows at each byte, so any group of <= 57 bits starting
    # anywhere is one shift away.
    padded = np.concatenate([np.packbits(bits), np.zeros(8, np.uint8)])
    windows = np.zeros(padded.shape[0] - 7, dtype=np.uint64)
    for k in range(8):
        windows |= padded[k : k + windows.shape[0]].astype(np.uint64) << np.uint64(
            56 - 8 * k
        )
    position = np.arange(n_bits, dtype=np.int64)
    value = np.ones(n_bits, dtype=np.int64)
    result = np.zeros(n_bits, dtype=np.int64)
    end = np.full(n_bits, -1, dtype=np.int64)
    active = np.arange(n_bits)
    for _ in range(_MAX_GROUPS + 1):
        if active.size == 0:
            break
        pos, val = position[active], value[active]
        in_range = pos < n_bits
        stop = in_range & (bits[np.minimum(pos, n_bits - 1)] == 0)
        result[active[stop]] = val[stop]
        end[active[stop]] = pos[stop] + 1
        # A "1" starts a group of val + 1 bits that becomes the next val.
        grow = in_range & ~stop & (pos + val + 1 <= n_bits) & (val + 1 <= 33)
        pos, val, active = pos[grow], val[grow], active[grow]
        width = (val + 1).astype(np.uint64)
        window = windows[pos >> 3] << (pos & 7).astype(np.uint64)
        position[active] = pos + val + 1
        value[active] = (window >> (np.uint64(64) - width)).astype(np.int64)
    return result, end


def omega_decode(packed, n_values):
    """Decode ``n_values`` concatenated omega codes from ``packed`` bytes.

    Raises ``ValueError`` if the bytes do not hold exactly that many codes
    followed by fewer than 8 padding bits, all ones.
    """
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8))
    result, end = _decode_table(bits)
    values = np.empty(n_values, dtype=np.int64)
    position = 0
    result_list, end_list = result.tolist(), end.tolist()
    for k in range(n_values):
        if position >= bits.shape[0] or result_list[position] == 0:
            raise ValueError(f"code {k} of {n_values} is truncated or malformed")
        values[k] = result_list[position]
        position = end_list[position]
    _check_padding(bits, position)
    return values


def _check_padding(bits, position):
    tail = bits[position:]
    if tail.shape[0] >= 8 or not tail.all():
        raise ValueError(
            f"{tail.shape[0]} bits follow the last code; expected fewer than 8 "
            "padding bits, all ones"
        )


def encode_sparse_levels(levels):
    """QSGD's sparse code of signed integer levels: per nonzero, the omega code
    of the gap to it, its sign bit (1 for negative), the omega code of ``|level|``.

    Returns the packed bytes (padded with ones to a whole byte) and the number of
    nonzero levels, which the decoder needs to know where to stop. Magnitudes
    must be at most ``2**32``. Runs the compiled loop when it is built
    (:data:`ELIAS_KERNEL`), else :func:`encode_sparse_levels_numpy`: same bytes.

    Examples
    --------
    >>> import numpy as np
    >>> packed, n_nonzero = encode_sparse_levels(np.array([0, 0, -1, 0, 3]))
    >>> n_nonzero, len(packed)
    (2, 2)
    >>> decode_sparse_levels(packed, n_nonzero, 5).tolist()
    [0, 0, -1, 0, 3]
    """
    levels = np.asarray(levels)
    if levels.dtype.kind not in "iu":
        raise ValueError(f"levels must be integers, got dtype {levels.dtype}")
    if levels.dtype not in (np.int32, np.int64):
        levels = levels.astype(np.int64)
    if levels.size and max(int(levels.max()), -int(levels.min())) > _MAX_VALUE:
        raise ValueError(f"Elias-omega codes magnitudes up to {_MAX_VALUE}")
    if _c_encode is not None:
        return _c_encode(np.ascontiguousarray(levels.ravel()))
    return encode_sparse_levels_numpy(levels)


def encode_sparse_levels_numpy(levels):
    """:func:`encode_sparse_levels` on the NumPy path (the reference)."""
    levels = np.asarray(levels)
    where = np.flatnonzero(levels)
    gaps = np.diff(where, prepend=-1)
    magnitudes = np.abs(levels[where]).astype(np.int64)
    gap_codes, gap_lengths = _omega_codes(gaps)
    level_codes, level_lengths = _omega_codes(magnitudes)
    codes = np.stack(
        [gap_codes, (levels[where] < 0).astype(np.uint64), level_codes], axis=1
    ).ravel()
    lengths = np.stack(
        [gap_lengths, np.ones_like(gap_lengths), level_lengths], axis=1
    ).ravel()
    return _pack(_codes_to_bits(codes, lengths)), int(where.shape[0])


def _check_declared(packed, n_nonzero, n_values):
    """Reject a declared count the message cannot hold, before any allocation;
    return the message as bytes."""
    raw = np.frombuffer(packed, dtype=np.uint8)
    n_bits = 8 * raw.shape[0]
    if n_nonzero > n_values:
        raise ValueError(f"{n_nonzero} nonzeros declared for {n_values} values")
    # Each nonzero takes at least 3 bits (a gap, a sign, a level): a count the
    # bytes cannot hold is rejected before arrays of that size are allocated.
    if 3 * n_nonzero > n_bits:
        raise ValueError(
            f"{n_nonzero} nonzeros declared, but {n_bits} bits hold at most "
            f"{n_bits // 3}"
        )
    return raw


def _malformed(status, index, n_nonzero, n_values):
    """The error of a malformed message, worded as the NumPy path words it."""
    if status == 1:
        return ValueError(f"gap of nonzero {index} is truncated or malformed")
    if status == 2:
        return ValueError(f"level of nonzero {index} is truncated or malformed")
    if status == 3:
        return ValueError(
            f"{index} bits follow the last code; expected fewer than 8 "
            "padding bits, all ones"
        )
    return ValueError(f"nonzero at position {index} is outside a vector of {n_values}")


def decode_sparse_levels(packed, n_nonzero, n_values):
    """Inverse of :func:`encode_sparse_levels`; ``ValueError`` if malformed.

    The declared counts are checked against the message's length and
    ``n_values`` before anything of their size is allocated. Runs the compiled
    loop when it is built (:data:`ELIAS_KERNEL`), else
    :func:`decode_sparse_levels_numpy`: same levels, same errors.
    """
    if _c_decode is None:
        return decode_sparse_levels_numpy(packed, n_nonzero, n_values)
    raw = _check_declared(packed, n_nonzero, n_values)
    levels = np.zeros(n_values, dtype=np.int64)
    status, index = _c_decode(raw, n_nonzero, levels)
    if status:
        raise _malformed(status, index, n_nonzero, n_values)
    return levels


def decode_sparse_levels_numpy(packed, n_nonzero, n_values):
    """:func:`decode_sparse_levels` on the NumPy path (the reference)."""
    raw = _check_declared(packed, n_nonzero, n_values)
    bits = np.unpackbits(raw)
    n_bits = bits.shape[0]
    result, end = _decode_table(bits)
    result_list, end_list, bit_list = result.tolist(), end.tolist(), bits.tolist()
    gaps = np.empty(n_nonzero, dtype=np.int64)
    magnitudes = np.empty(n_nonzero, dtype=np.int64)
    signs = np.empty(n_nonzero, dtype=bool)
    position = 0
    for k in range(n_nonzero):
        if position >= n_bits or result_list[position] == 0:
            raise ValueError(f"gap of nonzero {k} is truncated or malformed")
        gaps[k] = result_list[position]
        sign_at = end_list[position]
        if sign_at + 1 >= n_bits or result_list[sign_at + 1] == 0:
            raise ValueError(f"level of nonzero {k} is truncated or malformed")
        signs[k] = bit_list[sign_at]
        magnitudes[k] = result_list[sign_at + 1]
        position = end_list[sign_at + 1]
    _check_padding(bits, position)
    where = np.cumsum(gaps) - 1
    if n_nonzero and where[-1] >= n_values:
        raise ValueError(
            f"nonzero at position {where[-1]} is outside a vector of {n_values}"
        )
    levels = np.zeros(n_values, dtype=np.int64)
    levels[where] = np.where(signs, -magnitudes, magnitudes)
    return levels


def theorem_3_2_bits(d, s):
    """QSGD's Theorem 3.2 bound on the expected Elias-coded length, in bits.

    ``(3 + 3/2 log2(2 (s^2 + d) / (s (s + sqrt d)))) s (s + sqrt d) + 32`` for one
    vector (bucket) of length ``d`` at ``s`` levels, the ``o(1)`` term dropped.

    >>> round(theorem_3_2_bits(4000, 1))
    896
    """
    nonzeros = s * (s + math.sqrt(d))
    return (3 + 1.5 * math.log2(2 * (s * s + d) / nonzeros)) * nonzeros + 32
