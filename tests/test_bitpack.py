"""Bit packing against a naive pure-Python reference packer, for every width."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_relu.compression._bitpack import pack_signed, packed_nbytes, unpack_signed

WIDTHS = range(2, 17)


def naive_pack(levels, bits):
    """Sign-magnitude fields, most significant bit first, concatenated, zero-padded."""
    bit_string = ""
    for value in levels:
        sign = "1" if value < 0 else "0"
        bit_string += sign + format(abs(int(value)), f"0{bits - 1}b")
    bit_string += "0" * (-len(bit_string) % 8)
    return bytes(int(bit_string[i : i + 8], 2) for i in range(0, len(bit_string), 8))


def level_lists(bits, max_size=40):
    s = 2 ** (bits - 1) - 1
    return st.lists(st.integers(-s, s), max_size=max_size)


@pytest.mark.parametrize("bits", WIDTHS)
@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_pack_matches_naive_reference_and_round_trips(bits, data):
    levels = data.draw(level_lists(bits))
    array = np.array(levels, dtype=np.int32)
    packed = pack_signed(array, bits)
    assert packed == naive_pack(levels, bits)
    assert len(packed) == packed_nbytes(len(levels), bits)
    assert unpack_signed(packed, len(levels), bits).tolist() == levels


@pytest.mark.parametrize("bits", WIDTHS)
def test_extreme_levels_round_trip(bits):
    s = 2 ** (bits - 1) - 1
    levels = np.array([s, -s, 0, 1, -1, s - 1, -(s - 1)] * 3, dtype=np.int32)
    packed = pack_signed(levels, bits)
    assert packed == naive_pack(levels.tolist(), bits)
    np.testing.assert_array_equal(unpack_signed(packed, levels.size, bits), levels)


@pytest.mark.parametrize("bits", [2, 5, 8, 13, 16])
def test_unpack_rejects_wrong_payload_length(bits):
    packed = pack_signed(np.arange(-1, 2).repeat(5), bits)
    with pytest.raises(ValueError, match="packed payload has"):
        unpack_signed(packed[:-1], 15, bits)
    with pytest.raises(ValueError, match="packed payload has"):
        unpack_signed(packed + b"\x00", 15, bits)


def test_packed_nbytes():
    assert packed_nbytes(0, 8) == 0
    assert packed_nbytes(3, 2) == 1
    assert packed_nbytes(5, 2) == 2
    assert packed_nbytes(10, 7) == 9
    assert packed_nbytes(10, 16) == 20
