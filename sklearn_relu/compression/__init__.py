"""Gradient compressors: what a worker turns its gradient into before sending it.

A compressor has ``compress(vector, random_state) -> bytes`` and
``decompress(message) -> ndarray``; the message is self-describing and its
length is its exact size on the wire.
"""

from ._base import Compressor, MessageError
from ._elias import theorem_3_2_bits
from ._identity import Identity
from ._intsgd import IntSGD
from ._qsgd import QSGD, levels_for_bits

__all__ = [
    "Compressor",
    "Identity",
    "IntSGD",
    "MessageError",
    "QSGD",
    "levels_for_bits",
    "theorem_3_2_bits",
]
