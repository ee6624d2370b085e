"""One name-to-factory registry, used for backends, compressors and aggregators.

A parameter (``backend=``, ``solver=``, ``aggregation=``) takes either a name
registered here or an instance of the strategy's base class.
"""

import functools
import hashlib
import numbers

import numpy as np

__all__ = ["ParameterIdentity", "Registry", "describe"]


class Registry:
    """Names a user may pass for ``parameter``, each mapped to a factory.

    Parameters
    ----------
    parameter : str
        The estimator parameter the names are for, as error messages say it.
    base : type
        Instances of it are accepted as they are.
    described : str
        ``base`` with its article, for error messages ("a Backend").

    Examples
    --------
    >>> registry = Registry("size", int, "an int")
    >>> registry.register("small", lambda: 1)
    >>> registry.names(), registry.get("small"), registry.get(7)
    (['small'], 1, 7)
    """

    def __init__(self, parameter, base, described):
        self.parameter, self.base, self.described = parameter, base, described
        self._factories = {}

    def register(self, name, factory):
        self._factories[name] = factory

    def names(self):
        return sorted(self._factories)

    def check(self, value):
        """Raise ``ValueError`` unless ``value`` is a registered name or an
        instance of ``base``; build nothing."""
        if isinstance(value, self.base) or (
            isinstance(value, str) and value in self._factories
        ):
            return value
        raise ValueError(
            f"{self.parameter} must be one of {self.names()} or {self.described} "
            f"instance, got {value!r}"
        )

    def get(self, value, *args, **kwargs):
        """``value`` itself if an instance of ``base``, else a fresh object from
        the factory registered as ``value``, called with ``args`` and ``kwargs``."""
        self.check(value)
        if isinstance(value, self.base):
            return value
        return self._factories[value](*args, **kwargs)


class ParameterIdentity:
    """A strategy known by its class and its parameters: ``repr``, ``==`` and
    ``hash`` from :meth:`_parameters` (a dict of the constructor's
    arguments; none by default), so that two instances built alike are equal
    on every process, whatever their state."""

    def _parameters(self):
        return {}

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self._parameters().items())
        return f"{type(self).__name__}({arguments})"

    def __eq__(self, other):
        return type(self) is type(other) and self._parameters() == other._parameters()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self._parameters().items()))))

# Nested instances described deeper than this are described by their class.
_IDENTITY_DEPTH = 8


def describe(value, depth=0):
    """``value`` as a string that is the same in every process and differs for
    values that fit other models: a number or a string by its ``repr``, an
    array by a digest of its bytes, a function or a class by its module and
    name, an instance by its class and its parameters (``_parameters()`` of a
    :class:`ParameterIdentity`, ``get_params()`` of a
    scikit-learn object, else its public attributes), never by an address."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (str, numbers.Number)):
        return repr(value)
    if depth > _IDENTITY_DEPTH:
        return type(value).__qualname__
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        array = np.ascontiguousarray(value)
        digest = hashlib.sha256(array.tobytes()).hexdigest()[:16]
        return f"array{array.shape} {array.dtype} sha256:{digest}"
    if isinstance(value, (np.ndarray, list, tuple)):
        items = value.tolist() if isinstance(value, np.ndarray) else value
        return "[" + ", ".join(describe(item, depth + 1) for item in items) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(
            f"{key!r}: {describe(item, depth + 1)}"
            for key, item in sorted(value.items(), key=lambda pair: repr(pair[0]))
        ) + "}"
    if isinstance(value, functools.partial):
        return (f"functools.partial({describe(value.func, depth + 1)}, "
                f"*{describe(value.args, depth + 1)}, "
                f"**{describe(value.keywords, depth + 1)})")
    # A function, a class, a ufunc carry their name; an instance does not.
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if callable(value) and isinstance(name, str):
        return f"{getattr(value, '__module__', None)}.{name}"
    arguments = ", ".join(
        f"{name}={describe(item, depth + 1)}"
        for name, item in _parameters_of(value).items()
    )
    return f"{type(value).__qualname__}({arguments})"


def _parameters_of(value):
    """The parameters an instance is built with, as its own protocol gives them."""
    if isinstance(value, ParameterIdentity):
        return value._parameters()
    if callable(getattr(value, "get_params", None)):  # scikit-learn
        return value.get_params(deep=False)
    # Public attributes: private ones hold state (a generator, a memory).
    return {
        name: item for name, item in sorted(getattr(value, "__dict__", {}).items())
        if not name.startswith("_")
    }
