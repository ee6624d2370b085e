"""Aggregators: how the workers' decoded messages become one step direction.

``ReLURegressor(aggregation=name)`` takes a name registered here with
``register_aggregator(name, factory)`` (``factory()`` returns a fresh
aggregator) or an :class:`Aggregator` instance. Every aggregator sees the
workers' vectors in worker order, so that every backend gives the same bits.

``"mean"`` and ``"majority"`` depend on the messages only through their sum;
the robust rules (``"geometric_median"``, ``"bgmd"``, ``"median"``,
``"trimmed_mean"``, ``"krum"``, ``"multi_krum"``, ``"centered_clip"``) need every message and
withstand a minority of Byzantine workers (see :doc:`/robust`).
"""

from .._registry import Registry
from ._base import Aggregator, RobustAggregator, SumAggregator
from ._bgmd import BlockGeometricMedian
from ._centered_clip import CenteredClip
from ._geometric_median import GeometricMedian, geometric_median
from ._krum import Krum, MultiKrum
from ._majority import MajorityVote
from ._mean import Mean
from ._median import CoordinateMedian
from ._trimmed_mean import TrimmedMean

__all__ = [
    "Aggregator",
    "BlockGeometricMedian",
    "CenteredClip",
    "CoordinateMedian",
    "GeometricMedian",
    "Krum",
    "MajorityVote",
    "Mean",
    "MultiKrum",
    "RobustAggregator",
    "SumAggregator",
    "TrimmedMean",
    "available_aggregators",
    "geometric_median",
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
register_aggregator("geometric_median", GeometricMedian)
register_aggregator("bgmd", BlockGeometricMedian)
register_aggregator("median", CoordinateMedian)
register_aggregator("trimmed_mean", TrimmedMean)
register_aggregator("krum", Krum)
register_aggregator("multi_krum", MultiKrum)
register_aggregator("centered_clip", CenteredClip)
