"""Attacks with the adversary's knowledge: they read the honest workers'
vectors of the step, and the aggregator in use.

A worker sees only its own vector, so these attacks do not run in the worker:
the backend, where every decoded vector of the step is known (the one place
messages become a step, ``Backend.sum_decoded``, and where the exact
statistics are combined), replaces the first ``n_byzantine`` workers'
vectors with :meth:`OmniscientAttack.craft`'s before the rule aggregates
them. It simulates the omniscient adversary of the literature: no message
carries the honest vectors to the attackers, so no byte is counted for that.
"""

import numbers
from abc import abstractmethod

import numpy as np
from scipy.special import ndtri

from ._attacks import Attack

__all__ = [
    "ALIE",
    "IPM",
    "LabelFlip",
    "Mimic",
    "OmniscientAttack",
    "OptimalALIE",
    "OptimalIPM",
    "baruch_z",
    "replace_byzantine",
]


class OmniscientAttack(Attack):
    """An attack that reads the honest workers' vectors of the step.

    Subclasses implement :meth:`craft`. The worker itself sends its true
    vector (``attack(vector, rng)`` returns it); the backend then replaces
    the decoded vector of each Byzantine worker by ``craft``'s (see
    :func:`replace_byzantine`), in worker order, on every backend and MPI
    rank alike. A step's crafted vector goes through the compressor as a
    fresh message, so it is a message of the compressor's format (a sign
    compressor's attacker sends signs).
    """

    omniscient = True

    def __call__(self, vector, rng):
        return vector

    @abstractmethod
    def craft(self, own, honest, aggregate, rng, n_byzantine):
        """The vector a Byzantine worker sends.

        Parameters
        ----------
        own : ndarray of shape (d,), float64
            The worker's true vector.
        honest : ndarray of shape (n - n_byzantine, d), float64
            The honest workers' vectors of the step, in worker order.
        aggregate : callable
            ``aggregate(vectors)`` runs the aggregator in use on ``n``
            vectors (a list, the Byzantine workers' first) and returns its
            result, leaving the fit's aggregator as it was (its memory is
            copied): what an attack that searches against the rule calls.
        rng : numpy.random.Generator
            A stream of the step's and this worker's own, the same on every
            backend.
        n_byzantine : int
            How many workers attack.

        Returns
        -------
        vector : ndarray of shape (d,)
        """


def _moments(honest):
    mean = honest.mean(axis=0)
    # The sample standard deviation (ddof=1), as Baruch et al.'s code takes it.
    std = honest.std(axis=0, ddof=1) if honest.shape[0] > 1 else np.zeros_like(mean)
    return mean, std


def baruch_z(n_workers, n_byzantine):
    """Baruch et al.'s default ``z``: with ``s = floor(n/2 + 1) - f``,
    ``Phi^{-1}((n - s) / n)``.

    Examples
    --------
    >>> round(float(baruch_z(10, 3)), 4)
    0.5244
    """
    s = np.floor(n_workers / 2 + 1) - n_byzantine
    return float(ndtri((n_workers - s) / n_workers))


def _check_factor(name, value, allow_none=True):
    if value is None and allow_none:
        return
    if not (isinstance(value, numbers.Real) and np.isfinite(value)):
        raise ValueError(f"{name} must be a finite float{' or None' if allow_none else ''}, "
                         f"got {value!r}")


class ALIE(OmniscientAttack):
    """"A little is enough" (Baruch, Baruch, Goldberg, NeurIPS 2019):
    ``mu - z * sigma``, coordinate-wise over the honest vectors.

    ``mu`` is their mean and ``sigma`` their sample standard deviation
    (``ddof=1``) a coordinate. Every attacker sends the same vector.

    Parameters
    ----------
    z : float or None, default=None
        ``None`` is Baruch et al.'s: with ``n`` workers, ``f`` of them
        Byzantine, ``s = floor(n/2 + 1) - f``, ``z = Phi^{-1}((n - s) / n)``
        (0.52 for ``n = 10, f = 3``; 0 for ``f = 1``).

    Examples
    --------
    >>> import numpy as np
    >>> honest = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    >>> ALIE(z=1.0).craft(None, honest, None, None, n_byzantine=1)
    array([0., 1.])
    """

    def __init__(self, z=None):
        _check_factor("z", z)
        self.z = z

    def _parameters(self):
        return {"z": self.z}

    def craft(self, own, honest, aggregate, rng, n_byzantine):
        z = self.z
        if z is None:
            z = baruch_z(honest.shape[0] + n_byzantine, n_byzantine)
        mean, std = _moments(honest)
        return mean - z * std


class IPM(OmniscientAttack):
    """Inner product manipulation (Xie, Koyejo, Gupta, UAI 2020):
    ``-eps * mu``, ``mu`` the honest vectors' mean.

    Parameters
    ----------
    eps : float, default=0.1

    Examples
    --------
    >>> import numpy as np
    >>> honest = np.array([[1.0, 2.0], [3.0, 2.0]])
    >>> IPM(eps=0.5).craft(None, honest, None, None, n_byzantine=1)
    array([-1., -1.])
    """

    def __init__(self, eps=0.1):
        _check_factor("eps", eps, allow_none=False)
        self.eps = eps

    def _parameters(self):
        return {"eps": self.eps}

    def craft(self, own, honest, aggregate, rng, n_byzantine):
        return -self.eps * honest.mean(axis=0)


#: The factors the optimal attacks search by default: 0 to 10 by 0.25.
DEFAULT_FACTORS = tuple(np.round(np.arange(0.0, 10.0 + 1e-9, 0.25), 2))


class _LineSearch(OmniscientAttack):
    """The factor of a one-parameter attack that moves the aggregate furthest
    from the honest mean, found on a grid (Allouah et al. 2023, ByzFL's
    "optimal" attacks).

    Each factor's vector is sent by every attacker and aggregated by the rule
    in use; the distance is measured from what the rule returns when every
    worker sends the honest mean, so that rules whose output is on another
    scale (the sum of gradient shares, a sign) compare alike. The first
    factor of the largest distance wins. The search of a step is made once
    and every attacker sends its result.
    """

    def __init__(self, factors=None):
        if factors is not None:
            factors = tuple(float(value) for value in factors)
            if not factors or not all(np.isfinite(factors)):
                raise ValueError(
                    f"factors must be a non-empty sequence of finite floats, got {factors!r}"
                )
        self.factors = factors
        self._last = None

    def _parameters(self):
        return {"factors": self.factors}

    @abstractmethod
    def vector(self, factor, mean, std):
        """The vector sent for ``factor``."""

    def best_factor(self, honest, aggregate, n_byzantine):
        """The factor of the grid that the attackers use for ``honest``."""
        mean, std = _moments(honest)
        honest_list = list(honest)
        target = aggregate([mean] * (n_byzantine + len(honest_list)))
        best, best_distance = None, -np.inf
        for factor in self.factors or DEFAULT_FACTORS:
            sent = self.vector(factor, mean, std)
            result = aggregate([sent] * n_byzantine + honest_list)
            distance = float(np.linalg.norm(np.asarray(result, np.float64) - target))
            if distance > best_distance:
                best, best_distance = factor, distance
        return best

    def craft(self, own, honest, aggregate, rng, n_byzantine):
        # Every attacker of the step gets the same honest vectors: search once.
        last = self._last
        if (
            last is None or last[0] is not aggregate or last[1] != n_byzantine
            or not np.array_equal(last[2], honest)
        ):
            factor = self.best_factor(honest, aggregate, n_byzantine)
            self._last = (aggregate, n_byzantine, honest.copy(), factor)
        mean, std = _moments(honest)
        return self.vector(self._last[3], mean, std)

    # A copy, or a worker's pickled attack, starts without the last search.
    def __deepcopy__(self, memo):
        return type(self)(self.factors)

    def __getstate__(self):
        return {**self.__dict__, "_last": None}


class OptimalALIE(_LineSearch):
    """ALIE with the ``z`` that moves the aggregate furthest from the honest
    mean, searched on a grid against the aggregator in use.

    Parameters
    ----------
    factors : sequence of float or None, default=None
        The ``z`` tried; ``None`` is 0 to 10 by 0.25.

    Examples
    --------
    >>> import numpy as np
    >>> honest = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> mean = lambda vectors: np.mean(vectors, axis=0)
    >>> sent = OptimalALIE(factors=[0.0, 1.0, 2.0]).craft(None, honest, mean, None, 1)
    >>> np.round(sent, 4)   # 1.5 - 2 * 1.291: the largest z moves the mean most
    array([-1.082])
    """

    def vector(self, factor, mean, std):
        return mean - factor * std


class OptimalIPM(_LineSearch):
    """IPM with the ``eps`` that moves the aggregate furthest from the honest
    mean, searched on a grid against the aggregator in use.

    Parameters
    ----------
    factors : sequence of float or None, default=None
        The ``eps`` tried; ``None`` is 0 to 10 by 0.25.

    Examples
    --------
    >>> import numpy as np
    >>> honest = np.array([[1.0], [3.0]])
    >>> median = lambda vectors: np.median(vectors, axis=0)
    >>> OptimalIPM(factors=[0.1, 1.0]).craft(None, honest, median, None, 1)
    array([-0.2])
    """

    def vector(self, factor, mean, std):
        return -factor * mean


class Mimic(OmniscientAttack):
    """Mimic (Karimireddy, He, Jaggi, ICLR 2022): every attacker copies one
    honest worker's vector.

    The worker copied is a fixed one (``worker``, counted among the honest
    workers: 0 is worker ``n_byzantine``), not the paper's choice along the
    direction of largest heterogeneity, which needs a warm-up and a memory;
    under heterogeneous shards any fixed worker's data pulls the model the
    same way at every step, which is what the attack exploits.

    Parameters
    ----------
    worker : int, default=0
        The honest worker copied (0 is the first honest one).

    Examples
    --------
    >>> import numpy as np
    >>> honest = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> Mimic(worker=1).craft(None, honest, None, None, n_byzantine=1)
    array([3., 4.])
    """

    def __init__(self, worker=0):
        if not isinstance(worker, numbers.Integral) or isinstance(worker, bool) or worker < 0:
            raise ValueError(f"worker must be an integer >= 0, got {worker!r}")
        self.worker = worker

    def _parameters(self):
        return {"worker": self.worker}

    def craft(self, own, honest, aggregate, rng, n_byzantine):
        if self.worker >= honest.shape[0]:
            raise ValueError(
                f"Mimic(worker={self.worker}) copies honest worker {self.worker}, but "
                f"there are {honest.shape[0]} honest workers"
            )
        return honest[self.worker].copy()


class LabelFlip(Attack):
    """A data attack: the worker computes honest gradients and statistics on
    corrupted targets, ``-y`` (or ``target(y)``), and sends them as they are.

    Parameters
    ----------
    target : callable or None, default=None
        ``target(y) -> y'`` with ``y``'s shape; ``None`` is ``-y``.

    Examples
    --------
    >>> import numpy as np
    >>> LabelFlip().poison_labels(np.array([1.0, -2.0]))
    array([-1.,  2.])
    >>> LabelFlip(target=lambda y: 2 * y).poison_labels(np.array([1.0]))
    array([2.])
    """

    def __init__(self, target=None):
        if target is not None and not callable(target):
            raise ValueError(f"target must be None or a callable, got {target!r}")
        self.target = target

    def _parameters(self):
        return {"target": self.target}

    def __call__(self, vector, rng):
        return vector

    def poison_labels(self, y):
        if self.target is None:
            return -y
        poisoned = np.asarray(self.target(y.copy()), dtype=y.dtype)
        if poisoned.shape != y.shape or not np.all(np.isfinite(poisoned)):
            raise ValueError(
                f"LabelFlip's target returned shape {poisoned.shape} or non-finite "
                f"values, expected {y.shape} finite targets"
            )
        return poisoned


def replace_byzantine(attack, vectors, n_byzantine, aggregate, entropy, reencode=None):
    """``vectors`` (worker order) with the first ``n_byzantine`` replaced by
    ``attack``'s :meth:`~OmniscientAttack.craft`.

    ``entropy`` (a sequence of ints: the fit's seed, the round) seeds one
    random stream per Byzantine worker; ``reencode(vector, rng)``, if given,
    turns a crafted vector into what its message decodes to.

    Examples
    --------
    >>> import numpy as np
    >>> vectors = [np.array([9.0]), np.array([1.0]), np.array([3.0])]
    >>> replace_byzantine(IPM(eps=1.0), vectors, 1, None, [0, 1])[0]
    array([-2.])
    """
    honest = np.array(vectors[n_byzantine:], dtype=np.float64)
    out = list(vectors)
    for index in range(n_byzantine):
        rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(index,)))
        own = np.asarray(vectors[index])
        crafted = np.asarray(
            attack.craft(own.astype(np.float64), honest, aggregate, rng, n_byzantine)
        )
        if crafted.shape != own.shape or not np.all(np.isfinite(crafted)):
            raise ValueError(
                f"the attack {attack!r} crafted shape {crafted.shape} or non-finite "
                f"values; expected {own.shape} finite values"
            )
        crafted = crafted.astype(own.dtype)
        out[index] = crafted if reencode is None else reencode(crafted, rng)
    return out
