"""Gradient compressors: what a worker turns its gradient into before sending it.

A compressor has ``compress(vector, random_state) -> bytes`` and
``decompress(message) -> ndarray``; the message is self-describing and its
length is its exact size on the wire.

``ReLURegressor(solver=name)`` builds its compressor from this module's
registry: ``register_compressor(name, factory)`` makes ``solver=name`` call
``factory(estimator)``, which reads the estimator parameters it needs (``bits``,
``bucket_size``, ...). ``solver=`` also takes a :class:`Compressor` instance.
"""

from .._registry import Registry
from ._base import Compressor, MessageError
from ._elias import theorem_3_2_bits
from ._error_feedback import ErrorFeedback
from ._identity import Identity
from ._intsgd import IntSGD
from ._qsgd import QSGD, check_quantizer_params, levels_for_bits
from ._sign import ScaledSign, SignSGD, Signum
from ._terngrad import TernGrad
from ._topk import TopK

__all__ = [
    "Compressor",
    "ErrorFeedback",
    "Identity",
    "IntSGD",
    "MessageError",
    "QSGD",
    "ScaledSign",
    "SignSGD",
    "Signum",
    "TernGrad",
    "TopK",
    "available_compressors",
    "check_quantizer_params",
    "get_compressor",
    "levels_for_bits",
    "register_compressor",
    "theorem_3_2_bits",
]

_REGISTRY = Registry("solver", Compressor, "a Compressor")


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
    _REGISTRY.register(name, factory)


def available_compressors():
    """Names accepted by ``ReLURegressor(solver=...)``, sorted."""
    return _REGISTRY.names()


def get_compressor(solver, estimator):
    """A fresh compressor for ``solver``: a registered name, or the instance itself."""
    return _REGISTRY.get(solver, estimator)


def _with_feedback(compressor, estimator):
    """``compressor``, wrapped in error feedback when the estimator asks for it."""
    if not getattr(estimator, "error_feedback", False):
        return compressor
    if not compressor.biased:
        raise ValueError(
            f"error_feedback=True is for biased compressors (solver='signsgd' or "
            f"'topk'); solver={estimator.solver!r} is unbiased"
        )
    return ErrorFeedback(compressor)


def _signum(estimator):
    if getattr(estimator, "error_feedback", False):
        raise ValueError(
            "solver='signum' keeps momentum, not error feedback: use "
            "solver='signsgd' with error_feedback=True (EF-signSGD)"
        )
    return Signum(momentum=estimator.momentum)


register_compressor("sgd", lambda est: _with_feedback(Identity(), est))
register_compressor(
    "qsgd",
    lambda est: _with_feedback(
        QSGD(bits=est.bits, bucket_size=est.bucket_size, encoding=est.encoding), est
    ),
)
register_compressor("intsgd", lambda est: _with_feedback(IntSGD(bits=est.bits), est))
# EF-signSGD sends the scaled sign, so that the memory is in gradient units.
register_compressor(
    "signsgd",
    lambda est: ErrorFeedback(ScaledSign()) if est.error_feedback else SignSGD(),
)
register_compressor("signum", _signum)
register_compressor("terngrad", lambda est: _with_feedback(TernGrad(), est))
register_compressor("topk", lambda est: _with_feedback(TopK(k=est.k), est))
