"""Byzantine attacks: what the first ``n_byzantine`` workers send instead of
the truth.

``ReLURegressor(n_byzantine=f, attack=...)`` makes workers ``0 .. f-1``
Byzantine. A Byzantine worker applies its attack to every vector it sends:
its gradient, before its compressor encodes it (so the bytes on the wire stay
those of an honest message), and its exact statistics (the start's, the
losses). The attack draws from the worker's own random stream, so every
backend gives the same model. See :doc:`/robust`.

``attack=`` takes a name registered here with ``register_attack(name,
factory)``, an :class:`Attack` instance (``Scaled(c=10)``), or any callable
``attack(vector, rng) -> vector``.

An :class:`OmniscientAttack` (``"alie"``, ``"ipm"``, ``"optimal_alie"``,
``"optimal_ipm"``, ``"mimic"``) reads the honest workers' vectors of the step
and the aggregator in use: the backend, where every decoded vector is known,
replaces the Byzantine workers' vectors with its
:meth:`~OmniscientAttack.craft`. ``"label_flip"`` attacks the data: the
Byzantine workers train on ``-y`` (:class:`LabelFlip`).
"""

from .._registry import Registry
from ._attacks import Attack, FunctionAttack, Gaussian, Scaled, SignFlip, Zero
from ._omniscient import (
    ALIE,
    IPM,
    LabelFlip,
    Mimic,
    OmniscientAttack,
    OptimalALIE,
    OptimalIPM,
    baruch_z,
    replace_byzantine,
)

__all__ = [
    "ALIE",
    "IPM",
    "Attack",
    "FunctionAttack",
    "Gaussian",
    "LabelFlip",
    "Mimic",
    "OmniscientAttack",
    "OptimalALIE",
    "OptimalIPM",
    "Scaled",
    "SignFlip",
    "Zero",
    "available_attacks",
    "baruch_z",
    "get_attack",
    "register_attack",
    "replace_byzantine",
]

_REGISTRY = Registry("attack", Attack, "a callable or an Attack")


def register_attack(name, factory):
    """Make ``attack=name`` use ``factory()``."""
    _REGISTRY.register(name, factory)


def available_attacks():
    """Names accepted by ``ReLURegressor(attack=...)``, sorted."""
    return _REGISTRY.names()


def get_attack(attack):
    """A fresh attack from a registered name, ``attack`` itself if an
    :class:`Attack`, or a callable wrapped in a :class:`FunctionAttack`."""
    if callable(attack) and not isinstance(attack, (Attack, str)):
        return FunctionAttack(attack)
    return _REGISTRY.get(attack)


register_attack("sign_flip", SignFlip)
register_attack("scaled", Scaled)
register_attack("gaussian", Gaussian)
register_attack("zero", Zero)
register_attack("alie", ALIE)
register_attack("ipm", IPM)
register_attack("optimal_alie", OptimalALIE)
register_attack("optimal_ipm", OptimalIPM)
register_attack("mimic", Mimic)
register_attack("label_flip", LabelFlip)
