"""Gradient compressors: what a worker turns its gradient into before sending it.

A compressor has ``compress(vector, random_state) -> bytes`` and
``decompress(message) -> ndarray``; the message is self-describing and its
length is its exact size on the wire.

``ReLURegressor(solver=name)`` builds its compressor from this module's
registry: ``register_compressor(name, factory)`` makes ``solver=name`` call
``factory(estimator)``, which reads the estimator parameters it needs (``bits``,
``bucket_size``, ...). ``solver=`` also takes a :class:`Compressor` instance.
"""

from ._base import Compressor, MessageError
from ._elias import theorem_3_2_bits
from ._identity import Identity
from ._intsgd import IntSGD
from ._qsgd import QSGD, check_quantizer_params, levels_for_bits

__all__ = [
    "Compressor",
    "Identity",
    "IntSGD",
    "MessageError",
    "QSGD",
    "available_compressors",
    "get_compressor",
    "levels_for_bits",
    "register_compressor",
    "theorem_3_2_bits",
]

_REGISTRY = {}


def register_compressor(name, factory):
    """Make ``solver=name`` use the compressor ``factory(estimator)`` returns.

    Parameters
    ----------
    name : str
        The name users pass as ``ReLURegressor(solver=name)`` and the command
        line's ``--solver``.
    factory : callable
        Called with the estimator at each fit; reads the parameters it needs
        from it and returns a fresh :class:`Compressor` (raising ``ValueError``
        for a bad parameter).

    Examples
    --------
    >>> from sklearn_relu import ReLURegressor
    >>> from sklearn_relu.compression import available_compressors, get_compressor
    >>> "qsgd" in available_compressors()
    True
    >>> get_compressor("qsgd", ReLURegressor(bits=4))
    QSGD(bits=4, bucket_size=None, encoding='packed')

    A new name is one call, for instance
    ``register_compressor("qsgd4", lambda est: QSGD(bits=4))``.
    """
    _REGISTRY[name] = factory


def available_compressors():
    """Names accepted by ``ReLURegressor(solver=...)``, sorted."""
    return sorted(_REGISTRY)


def get_compressor(solver, estimator):
    """A fresh compressor for ``solver``: a registered name, or the instance itself."""
    if isinstance(solver, Compressor):
        return solver
    if isinstance(solver, str) and solver in _REGISTRY:
        return _REGISTRY[solver](estimator)
    raise ValueError(
        f"solver must be one of {available_compressors()} or a Compressor "
        f"instance, got {solver!r}"
    )


register_compressor("sgd", lambda est: Identity())
register_compressor(
    "qsgd",
    lambda est: QSGD(bits=est.bits, bucket_size=est.bucket_size, encoding=est.encoding),
)
register_compressor("intsgd", lambda est: IntSGD(bits=est.bits))
