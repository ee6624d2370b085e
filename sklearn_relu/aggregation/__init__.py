"""Aggregators: how the workers' decoded messages become one step direction.

``ReLURegressor(aggregation=name)`` takes a name registered here with
``register_aggregator(name, factory)`` (``factory()`` returns a fresh
aggregator) or an :class:`Aggregator` instance. Every aggregator sees the
workers' vectors in worker order, so that every backend gives the same bits.
"""

from ._base import Aggregator
from ._majority import MajorityVote
from ._mean import Mean

__all__ = [
    "Aggregator",
    "MajorityVote",
    "Mean",
    "available_aggregators",
    "get_aggregator",
    "register_aggregator",
]

_REGISTRY = {}


def register_aggregator(name, factory):
    """Make ``aggregation=name`` use ``factory()``."""
    _REGISTRY[name] = factory


def available_aggregators():
    """Names accepted by ``ReLURegressor(aggregation=...)``, sorted."""
    return sorted(_REGISTRY)


def get_aggregator(aggregation):
    """A fresh aggregator from a registered name, or ``aggregation`` itself."""
    if isinstance(aggregation, Aggregator):
        return aggregation
    if isinstance(aggregation, str) and aggregation in _REGISTRY:
        return _REGISTRY[aggregation]()
    raise ValueError(
        f"aggregation must be one of {available_aggregators()} or an Aggregator "
        f"instance, got {aggregation!r}"
    )


register_aggregator("mean", Mean)
register_aggregator("majority", MajorityVote)
