"""The attacks a Byzantine worker can run on the vectors it sends."""

import numbers
from abc import ABC, abstractmethod

import numpy as np

from .._registry import ParameterIdentity

__all__ = ["Attack", "FunctionAttack", "Gaussian", "Scaled", "SignFlip", "Zero"]


class Attack(ParameterIdentity, ABC):
    """What a Byzantine worker sends in place of ``vector``.

    Called as ``attack(vector, rng)`` with the true 1-D float vector and the
    worker's own :class:`numpy.random.Generator`; returns a vector of the
    same shape and dtype.
    """

    #: Whether the attack reads the honest workers' vectors
    #: (:class:`~sklearn_relu.attacks.OmniscientAttack`): then the backend,
    #: where every decoded vector is known, replaces the Byzantine workers'.
    omniscient = False

    def poison_labels(self, y):
        """The targets a Byzantine worker trains on in place of its shard's
        ``y`` (``y`` itself unless the attack is on the data,
        :class:`~sklearn_relu.attacks.LabelFlip`)."""
        return y

    @abstractmethod
    def __call__(self, vector, rng):
        """The vector sent instead of ``vector``."""


class SignFlip(Attack):
    """``-vector``: the gradient ascended instead of descended.

    Examples
    --------
    >>> import numpy as np
    >>> SignFlip()(np.array([1.0, -2.0]), None)
    array([-1.,  2.])
    """

    def __call__(self, vector, rng):
        return -vector


class Scaled(Attack):
    """``-c * vector``.

    Parameters
    ----------
    c : float, default=4.0

    Examples
    --------
    >>> import numpy as np
    >>> Scaled(c=4)(np.array([1.0, -2.0]), None)
    array([-4.,  8.])
    """

    def __init__(self, c=4.0):
        if not (isinstance(c, numbers.Real) and np.isfinite(c)):
            raise ValueError(f"c must be a finite float, got {c!r}")
        self.c = c

    def _parameters(self):
        return {"c": self.c}

    def __call__(self, vector, rng):
        return (-self.c * vector).astype(vector.dtype, copy=False)


class Gaussian(Attack):
    """Noise: ``N(0, std^2)`` a coordinate, whatever the true vector.

    Parameters
    ----------
    std : float, default=100.0

    Examples
    --------
    >>> import numpy as np
    >>> sent = Gaussian(std=100)(np.zeros(1000), np.random.default_rng(0))
    >>> bool(90 < sent.std() < 110)
    True
    """

    def __init__(self, std=100.0):
        if not (isinstance(std, numbers.Real) and 0 < std < np.inf):
            raise ValueError(f"std must be a positive finite float, got {std!r}")
        self.std = std

    def _parameters(self):
        return {"std": self.std}

    def __call__(self, vector, rng):
        return rng.normal(0.0, self.std, size=vector.shape).astype(vector.dtype)


class Zero(Attack):
    """Zeros: a worker that contributes nothing (a crashed or lazy one).

    Examples
    --------
    >>> import numpy as np
    >>> Zero()(np.array([1.0, -2.0]), None)
    array([0., 0.])
    """

    def __call__(self, vector, rng):
        return np.zeros_like(vector)


class FunctionAttack(Attack):
    """A user's function ``function(vector, rng) -> vector`` as an attack.

    Its result is checked: the same number of finite values as ``vector``
    (a message of another length or of infinities cannot be encoded).

    Examples
    --------
    >>> import numpy as np
    >>> attack = FunctionAttack(lambda g, rng: 3 * g)
    >>> attack(np.array([1.0, -2.0]), None)
    array([ 3., -6.])
    """

    def __init__(self, function):
        self.function = function

    def _parameters(self):
        return {"function": self.function}

    def __call__(self, vector, rng):
        sent = np.asarray(self.function(vector.copy(), rng), dtype=vector.dtype)
        if sent.shape != vector.shape:
            raise ValueError(
                f"the attack {self.function!r} returned shape {sent.shape}, expected "
                f"{vector.shape}"
            )
        if not np.all(np.isfinite(sent)):
            raise ValueError(f"the attack {self.function!r} returned non-finite values")
        return sent
