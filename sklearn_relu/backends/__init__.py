"""Backends: where the workers of a fit run and how their messages travel.

``get_backend("inprocess")`` returns a fresh backend; ``register_backend`` adds one.
``"joblib"`` runs workers under the active ``joblib.parallel_config`` (loky,
threading, Dask); ``"mpi"`` runs one worker per MPI rank and needs the ``mpi``
extra (``pip install "sklearn-relu[mpi]"``), imported only when used.
"""

from .._registry import Registry
from ._base import Backend, CommunicationRecord
from ._inprocess import InProcessBackend
from ._joblib import JoblibBackend
from ._mpi import MPIBackend

__all__ = [
    "Backend",
    "CommunicationRecord",
    "InProcessBackend",
    "JoblibBackend",
    "MPIBackend",
    "available_backends",
    "get_backend",
    "register_backend",
]

_REGISTRY = Registry("backend", Backend, "a Backend")


def register_backend(name, factory):
    """Make ``backend=name`` create backends with ``factory()``."""
    _REGISTRY.register(name, factory)


def available_backends():
    """Names accepted by ``ReLURegressor(backend=...)``."""
    return _REGISTRY.names()


def get_backend(backend):
    """A fresh backend from a registered name, or ``backend`` itself if an instance."""
    return _REGISTRY.get(backend)


register_backend("inprocess", InProcessBackend)
register_backend("joblib", JoblibBackend)
# MPIBackend imports mpi4py when created, so "mpi" is listed without it and
# says what to install when used.
register_backend("mpi", MPIBackend)
