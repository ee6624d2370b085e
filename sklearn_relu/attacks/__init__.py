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
"""

from .._registry import Registry
from ._attacks import Attack, FunctionAttack, Gaussian, Scaled, SignFlip, Zero

__all__ = [
    "Attack",
    "FunctionAttack",
    "Gaussian",
    "Scaled",
    "SignFlip",
    "Zero",
    "available_attacks",
    "get_attack",
    "register_attack",
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
