"""One name-to-factory registry, used for backends, compressors and aggregators.

A parameter (``backend=``, ``solver=``, ``aggregation=``) takes either a name
registered here or an instance of the strategy's base class.
"""

__all__ = ["ParameterIdentity", "Registry"]


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
