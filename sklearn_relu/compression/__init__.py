"""Gradient compressors: what a worker turns its gradient into before sending it.

A compressor has ``compress(vector, random_state) -> bytes`` and
``decompress(message) -> ndarray``; the message is self-describing and its
length is its exact size on the wire. A :class:`SummableCompressor` (IntSGD,
Identity) also encodes vectors that are summed while encoded (an allreduce).

``ReLURegressor(solver=name)`` builds its compressor from this module's
registry: ``register_compressor(name, factory)`` makes ``solver=name`` call
``factory`` with the keyword arguments it declares among the estimator's
compressor parameters (``bits``, ``bucket_size``, ``encoding``, ``momentum``,
``k``, ``error_feedback``). ``solver=`` also takes a :class:`Compressor`
instance.
"""

import inspect

from .._registry import Registry
from ._base import Compressor, MessageError
from ._elias import theorem_3_2_bits
from ._error_feedback import ErrorFeedback
from ._identity import Identity
from ._intsgd import IntSGD
from ._qsgd import QSGD, check_quantizer_params, levels_for_bits
from ._sign import ScaledSign, SignSGD, Signum
from ._summable import SummableCompressor
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
    "SummableCompressor",
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

#: The estimator's parameters a compressor factory may declare, as keywords.
SOLVER_PARAMETERS = ("bits", "bucket_size", "encoding", "momentum", "k", "error_feedback")


def register_compressor(name, factory):
    """Make ``solver=name`` use the compressor ``factory`` returns.

    Parameters
    ----------
    name : str
        The name users pass as ``ReLURegressor(solver=name)`` and the command
        line's ``--solver``.
    factory : callable
        Called at each fit with the keyword arguments its signature declares
        among the estimator's compressor parameters (:data:`SOLVER_PARAMETERS`:
        ``bits``, ``bucket_size``, ``encoding``, ``momentum``, ``k``,
        ``error_feedback``; all of them if it takes ``**kwargs``); returns a
        fresh :class:`Compressor`, raising ``ValueError`` for a bad parameter.

    See Also
    --------
    get_compressor : the compressor a name gives.

    Examples
    --------
    A 4-bit QSGD that reads only the bucket size:

    >>> from sklearn_relu.compression import QSGD, get_compressor, register_compressor
    >>> register_compressor(
    ...     "qsgd4", lambda *, bucket_size=None: QSGD(bits=4, bucket_size=bucket_size)
    ... )
    >>> get_compressor("qsgd4", bits=8, bucket_size=512, k=0.1)
    QSGD(bits=4, bucket_size=512, encoding='packed')
    """
    _REGISTRY.register(name, _with_declared_keywords(factory))


def available_compressors():
    """Names accepted by ``ReLURegressor(solver=...)``, sorted.

    Examples
    --------
    >>> from sklearn_relu.compression import available_compressors
    >>> [name for name in available_compressors() if "sgd" in name]
    ['intsgd', 'qsgd', 'sgd', 'signsgd']
    """
    return _REGISTRY.names()


def get_compressor(solver, /, **params):
    """A fresh compressor for ``solver``: a registered name, or the instance itself.

    Parameters
    ----------
    solver : str or Compressor
        A name :func:`available_compressors` lists, or a compressor, which
        is returned as it is.
    **params
        The estimator's compressor parameters (:data:`SOLVER_PARAMETERS`);
        the factory registered as ``solver`` receives those it declares.

    Returns
    -------
    Compressor

    Examples
    --------
    >>> from sklearn_relu.compression import get_compressor
    >>> get_compressor("qsgd", bits=4, bucket_size=None, encoding="elias", k=0.1)
    QSGD(bits=4, bucket_size=None, encoding='elias')
    >>> get_compressor("topk", k=2, error_feedback=True)
    ErrorFeedback(compressor=TopK(k=2))
    """
    return _REGISTRY.get(solver, params)


def _with_declared_keywords(factory):
    """``factory`` as a function of a dict of parameters, called with those
    its signature declares (every one if it takes ``**kwargs``), so that a
    factory names just what it reads."""
    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return lambda params: factory(**params)
    declared = {
        p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return lambda params: factory(**{k: v for k, v in params.items() if k in declared})


def _with_feedback(compressor, error_feedback, solver):
    """``compressor``, wrapped in error feedback when ``error_feedback``."""
    if not error_feedback:
        return compressor
    if not compressor.biased:
        raise ValueError(
            f"error_feedback=True is for biased compressors (solver='signsgd' or "
            f"'topk'); solver={solver!r} is unbiased"
        )
    return ErrorFeedback(compressor)


def _sgd(*, error_feedback=False):
    return _with_feedback(Identity(), error_feedback, "sgd")


def _qsgd(*, bits=8, bucket_size=None, encoding="packed", error_feedback=False):
    quantizer = QSGD(bits=bits, bucket_size=bucket_size, encoding=encoding)
    return _with_feedback(quantizer, error_feedback, "qsgd")


def _intsgd(*, bits=8, error_feedback=False):
    return _with_feedback(IntSGD(bits=bits), error_feedback, "intsgd")


def _signsgd(*, error_feedback=False):
    # EF-signSGD sends the scaled sign, so that the memory is in gradient units.
    return ErrorFeedback(ScaledSign()) if error_feedback else SignSGD()


def _signum(*, momentum=0.9, error_feedback=False):
    if error_feedback:
        raise ValueError(
            "solver='signum' keeps momentum, not error feedback: use "
            "solver='signsgd' with error_feedback=True (EF-signSGD)"
        )
    return Signum(momentum=momentum)


def _terngrad(*, error_feedback=False):
    return _with_feedback(TernGrad(), error_feedback, "terngrad")


def _topk(*, k=0.1, error_feedback=False):
    return _with_feedback(TopK(k=k), error_feedback, "topk")


register_compressor("sgd", _sgd)
register_compressor("qsgd", _qsgd)
register_compressor("intsgd", _intsgd)
register_compressor("signsgd", _signsgd)
register_compressor("signum", _signum)
register_compressor("terngrad", _terngrad)
register_compressor("topk", _topk)
