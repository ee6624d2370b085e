"""Aggregators: how the workers' decoded messages become one step direction.

``ReLURegressor(aggregation=name)`` takes a name registered here with
``register_aggregator(name, factory)`` (``factory()`` returns a fresh
aggregator) or an :class:`Aggregator` instance. Every aggregator sees the
workers' vectors in worker order, so that every backend gives the same bits.

``"mean"`` and ``"majority"`` depend on the messages only through their sum;
the robust rules (``"geometric_median"``, ``"bgmd"``, ``"median"``,
``"trimmed_mean"``, ``"krum"``, ``"multi_krum"``, ``"centered_clip"``) need every message and
withstand a minority of Byzantine workers (see :doc:`/robust`).

A pre-aggregator's name and ``+`` before a robust rule's name (``"nnm+krum"``,
``"bucketing+geometric_median"``) applies the rule to the pre-aggregated
vectors (:class:`PreAggregated`); pre-aggregators are registered with
``register_pre_aggregator(name, factory)``.
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
from ._pre import NNM, Bucketing, PreAggregated, PreAggregator
from ._trimmed_mean import TrimmedMean

__all__ = [
    "NNM",
    "Aggregator",
    "BlockGeometricMedian",
    "Bucketing",
    "CenteredClip",
    "CoordinateMedian",
    "GeometricMedian",
    "Krum",
    "MajorityVote",
    "Mean",
    "MultiKrum",
    "PreAggregated",
    "PreAggregator",
    "RobustAggregator",
    "SumAggregator",
    "TrimmedMean",
    "available_aggregators",
    "available_pre_aggregators",
    "geometric_median",
    "get_aggregator",
    "register_aggregator",
    "register_pre_aggregator",
]

_REGISTRY = Registry("aggregation", Aggregator, "an Aggregator")
_PRE_REGISTRY = Registry(
    "the pre-aggregator (before '+' in aggregation=)", PreAggregator, "a PreAggregator"
)


def register_aggregator(name, factory):
    """Make ``aggregation=name`` use ``factory()``."""
    _REGISTRY.register(name, factory)


def available_aggregators():
    """Names accepted by ``ReLURegressor(aggregation=...)``, sorted."""
    return _REGISTRY.names()


def register_pre_aggregator(name, factory):
    """Make ``aggregation="name+rule"`` pre-aggregate with ``factory()``."""
    _PRE_REGISTRY.register(name, factory)


def available_pre_aggregators():
    """Names that may precede ``+`` in ``aggregation=``, sorted."""
    return _PRE_REGISTRY.names()


def get_aggregator(aggregation):
    """A fresh aggregator from a registered name, ``"pre+rule"`` (a
    pre-aggregator's name, then any name this accepts), or ``aggregation``
    itself.

    Examples
    --------
    >>> from sklearn_relu.aggregation import get_aggregator
    >>> get_aggregator("bucketing+krum")
    PreAggregated(pre=Bucketing(s=2, random_state=0), rule=Krum(n_byzantine=None))
    """
    if isinstance(aggregation, str) and "+" in aggregation:
        pre, rule = aggregation.split("+", 1)
        return PreAggregated(_PRE_REGISTRY.get(pre), get_aggregator(rule))
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
register_pre_aggregator("nnm", NNM)
register_pre_aggregator("bucketing", Bucketing)
