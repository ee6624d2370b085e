"""Packing of small signed integers into exactly ``bits`` bits each.

Values are stored in sign-magnitude form: the top bit of each ``bits``-wide field is
the sign, the remaining ``bits - 1`` bits the magnitude. Fields are concatenated most
significant bit first, the last byte padded with zeros, for every width (8 and 16
included, which only take a faster path to the same bytes). ``d`` values therefore take
``ceil(d * bits / 8)`` bytes, the size the project promises on the wire.
"""

import numpy as np

__all__ = ["pack_signed", "unpack_signed", "packed_nbytes"]


def packed_nbytes(n_values, bits):
    """Number of bytes ``n_values`` fields of ``bits`` bits occupy."""
    return (int(n_values) * int(bits) + 7) // 8


def _to_fields(levels, bits):
    magnitude = np.abs(levels).astype(np.uint32)
    sign = (levels < 0).astype(np.uint32)
    return (sign << np.uint32(bits - 1)) | magnitude


def _from_fields(fields, bits):
    sign_bit = np.uint32(1 << (bits - 1))
    magnitude = (fields & (sign_bit - np.uint32(1))).astype(np.int32)
    return np.where(fields & sign_bit, -magnitude, magnitude)


def pack_signed(levels, bits):
    """Pack integers with ``|levels| <= 2**(bits-1) - 1`` into a bytes object.

    Parameters
    ----------
    levels : ndarray of int
        Signed values to pack.
    bits : int
        Width of each field, in ``[2, 16]``.

    Returns
    -------
    packed : bytes
        ``packed_nbytes(len(levels), bits)`` bytes.

    Examples
    --------
    >>> import numpy as np
    >>> packed = pack_signed(np.array([1, -1, 0, 1]), bits=2)
    >>> len(packed)
    1
    >>> unpack_signed(packed, 4, bits=2).tolist()
    [1, -1, 0, 1]
    """
    levels = np.asarray(levels)
    if bits == 8:
        # Sign-magnitude and two's complement differ, so go through the fields
        # even on the byte-aligned path; this stays a single vectorized pass.
        return _to_fields(levels, 8).astype(np.uint8).tobytes()
    if bits == 16:
        return _to_fields(levels, 16).astype(">u2").tobytes()
    fields = _to_fields(levels, bits)
    if bits < 8:
        return _pack_groups(fields, bits)
    # Big-endian bytes of each field, unpacked to bits, keep the low ``bits`` bits
    # of every field, and pack the concatenation: one vectorized pass, any width.
    as_bytes = fields.astype(">u4").view(np.uint8).reshape(-1, 4)
    all_bits = np.unpackbits(as_bytes, axis=1)[:, 32 - bits :]
    return np.packbits(all_bits.ravel()).tobytes()


def unpack_signed(buffer, n_values, bits):
    """Inverse of :func:`pack_signed`; ``buffer`` must hold exactly the packed bytes."""
    raw = np.frombuffer(buffer, dtype=np.uint8)
    if raw.size != packed_nbytes(n_values, bits):
        raise ValueError(
            f"packed payload has {raw.size} bytes, expected "
            f"{packed_nbytes(n_values, bits)} for {n_values} values of {bits} bits"
        )
    if bits == 8:
        return _from_fields(raw.astype(np.uint32), 8)
    if bits == 16:
        return _from_fields(raw.view(">u2").astype(np.uint32), 16)
    if bits < 8:
        return _from_fields(_unpack_groups(raw, n_values, bits), bits)
    all_bits = np.unpackbits(raw)[: n_values * bits].reshape(n_values, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint32)
    fields = all_bits.astype(np.uint32) @ weights
    return _from_fields(fields, bits)


# Widths below 8: eight fields of ``bits`` bits make exactly ``bits`` bytes, so
# each group of eight is assembled in one uint64 and its low ``bits`` bytes kept.
# Same bytes as the bit-by-bit path, without an array of single bits.
def _group_shifts(bits):
    return (np.uint64(bits) * np.arange(7, -1, -1, dtype=np.uint64)).astype(np.uint64)


def _pack_groups(fields, bits):
    n_values = fields.shape[0]
    padded = np.zeros(-(-n_values // 8) * 8, dtype=np.uint64)
    padded[:n_values] = fields
    words = np.bitwise_or.reduce(
        padded.reshape(-1, 8) << _group_shifts(bits), axis=1
    )
    as_bytes = words.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - bits :]
    return as_bytes.tobytes()[: packed_nbytes(n_values, bits)]


def _unpack_groups(raw, n_values, bits):
    n_groups = -(-n_values // 8)
    body = np.zeros(n_groups * bits, dtype=np.uint8)
    body[: raw.size] = raw
    grouped = np.zeros((n_groups, 8), dtype=np.uint8)
    grouped[:, 8 - bits :] = body.reshape(n_groups, bits)
    words = grouped.view(">u8").reshape(-1).astype(np.uint64)
    mask = np.uint64((1 << bits) - 1)
    fields = (words[:, None] >> _group_shifts(bits)) & mask
    return fields.reshape(-1)[:n_values].astype(np.uint32)
