"""Aggregators: how the workers' decoded messages become one step direction.

``ReLURegressor(aggregation=name)`` takes a name registered here with
``register_aggregator(name, factory)`` (``factory()`` returns a fresh
aggregator) or an :class:`Aggregator` instance. Every aggregator sees the
workers' vectors in worker order, so that every backend gives the same bits.
"""

from .._registry import Registry
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

_REGISTRY = Registry("aggregation", Aggregator, "an Aggregator")


def register_aggregator(name, factory):
    """Make ``aggregation=name`` use ``factory()``."""
    _REGISTRY.register(name, factory)


def available_aggregators():
    """Names accepted by ``ReLURegressor(aggregation=...)``, sorted."""
    return _REGISTRY.names()


def get_aggregator(aggregation):
    """A fresh aggregator from a registered name, or ``aggregation`` itself."""
    return _REGISTRY.get(aggregation)


register_aggregator("mean", Mean)
register_aggregator("majority", MajorityVote)
