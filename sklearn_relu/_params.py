"""The estimator's parameters, declared once.

:data:`PARAMETERS` lists every ``ReLURegressor`` parameter with its default and
the values it accepts. From it:

- ``fit`` validates every parameter, whatever the solver (a ``momentum`` that
  only ``solver="signum"`` reads is still checked under ``solver="sgd"``), and
  works on the normalized values (:func:`validated`): NumPy scalars become
  Python ``int``/``float``/``bool``, so that ``batch_size=np.int16(200)``
  cannot overflow in ``n_samples * batch_size``;
- the command line's ``fit`` flags are generated (:func:`add_arguments`): flag,
  type, choices, default, and help, the first sentence of the parameter's
  entry in ``ReLURegressor``'s docstring. A parameter that has no flag says why
  in :attr:`Parameter.cli`.

The table is the package's own rather than scikit-learn's
``_parameter_constraints``: those validators live in a private module
(``sklearn.utils._param_validation``) whose names have changed between
releases, and the command line needs what they do not give (parsing a flag's
text, its choices and help).

Adding an estimator parameter is one entry here, the argument in
``ReLURegressor.__init__`` and its docstring entry.
"""

import importlib
import math
import numbers
import os
import re
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

__all__ = ["PARAMETERS", "Parameter", "validated", "add_arguments", "parameter_help"]


# -- what a parameter accepts ----------------------------------------------------
#: How a constraint's ``normalize`` refuses a value (``float(10**400)``
#: overflows).
_REFUSALS = (TypeError, ValueError, OverflowError)


class Constraint:
    """Values a parameter accepts: ``normalize`` returns the value normalized
    or raises; ``parse`` reads a command-line flag's text; ``text`` says what is
    accepted, as error messages quote it."""

    text = ""

    def normalize(self, value):
        raise NotImplementedError

    def parse(self, text):
        return text

    def choices(self):
        return None


class Integer(Constraint):
    """An integer (NumPy's included, not bool) in ``[low, high]``."""

    def __init__(self, low, high=None, text=None):
        self.low, self.high = low, high
        self.text = text or (
            f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        )

    def normalize(self, value):
        if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
            raise TypeError
        value = int(value)
        if value < self.low or (self.high is not None and value > self.high):
            raise ValueError
        return value

    def parse(self, text):
        return int(text)


class Real(Constraint):
    """A finite real number (not bool) in the interval ``low..high``, whose
    ends are included as ``closed`` says: "both", "left", "right" or "neither"."""

    def __init__(self, low, high, closed="both", text=None):
        self.low, self.high, self.closed = low, high, closed
        left = "[" if closed in ("both", "left") else "("
        right = "]" if closed in ("both", "right") else ")"
        self.text = text or f"a float in {left}{low}, {high}{right}"

    def normalize(self, value):
        if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
            raise TypeError
        value = float(value)
        if not math.isfinite(value):
            raise ValueError
        low_ok = value >= self.low if self.closed in ("both", "left") else value > self.low
        high_ok = (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        )
        if not (low_ok and high_ok):
            raise ValueError
        return value

    def parse(self, text):
        return float(text)


class Boolean(Constraint):
    text = "True or False"

    def normalize(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError
        return bool(value)

    def parse(self, text):
        # A boolean parameter's own flag is a switch; this reads the text of a
        # flag that takes a bool or another value (--average true, --average 500).
        words = {"true": True, "yes": True, "false": False, "no": False}
        if text.lower() not in words:
            raise ValueError(text)
        return words[text.lower()]


class Options(Constraint):
    """One of the given strings."""

    def __init__(self, *options):
        self.options = options
        self.text = repr(options[0]) if len(options) == 1 else f"one of {list(options)}"

    def normalize(self, value):
        if not isinstance(value, str) or value not in self.options:
            raise ValueError
        return value

    def choices(self):
        return list(self.options)


class NoneValue(Constraint):
    text = "None"

    def normalize(self, value):
        if value is not None:
            raise ValueError
        return None

    def parse(self, text):
        if text.lower() != "none":
            raise ValueError(text)
        return None


class Path(Constraint):
    text = "a file path"

    def normalize(self, value):
        if not isinstance(value, (str, os.PathLike)) or os.fspath(value) == "":
            raise ValueError
        return value


class Function(Constraint):
    text = "a callable"

    def normalize(self, value):
        if not callable(value):
            raise TypeError
        return value


class Splitter(Constraint):
    text = (
        "a splitter with a split(X, y, n_workers) method, such as "
        "DirichletShards(alpha=1.0)"
    )

    def normalize(self, value):
        # A string has a split method too, of another kind.
        if isinstance(value, str) or not callable(getattr(value, "split", None)):
            raise TypeError
        return value


class Seed(Constraint):
    text = "an int in [0, 2**32 - 1], a numpy.random.RandomState instance or None"

    def normalize(self, value):
        if value is None or isinstance(value, np.random.RandomState):
            return value
        return Integer(0, 2**32 - 1).normalize(value)

    def parse(self, text):
        return None if text.lower() == "none" else int(text)


class Array(Constraint):
    """An array-like of numbers (its shape is checked where it is known)."""

    text = "an array of shape (n_features,)"

    def normalize(self, value):
        if isinstance(value, (str, numbers.Number)) or value is None:
            raise TypeError
        np.asarray(value, dtype=np.float64)
        return value


class Registered(Constraint):
    """A name of a registry (``get`` builds it and raises ``ValueError`` with
    the registry's own message for an unknown one), or an instance ``get``
    accepts."""

    def __init__(self, available, get):
        self.available, self.get = available, get

    def normalize(self, value):
        self.get(value)
        return value

    def choices(self):
        return self.available()


class AnyOf(Constraint):
    """The first of ``constraints`` that accepts the value."""

    def __init__(self, *constraints, text=None):
        self.constraints = constraints
        self.text = text or " or ".join(c.text for c in constraints)

    def normalize(self, value):
        for constraint in self.constraints:
            try:
                return constraint.normalize(value)
            except _REFUSALS:
                continue
        raise ValueError

    def parse(self, text):
        for constraint in self.constraints:
            options = constraint.choices()
            if options is not None:
                if text in options:
                    return text
                continue
            try:
                return constraint.parse(text)
            except ValueError:
                pass
        raise ValueError(text)

    def choices(self):
        return None


@dataclass(frozen=True)
class Parameter:
    """One estimator parameter.

    Attributes
    ----------
    name : str
    default : object
    accepts : Constraint
    cli : str or None
        ``None``: the command line has the generated flag ``--name`` (dashes
        for underscores; a boolean whose default is True becomes
        ``--no-name``). ``"flag:--other"``: the generated flag, under that
        name. Otherwise why the parameter has no generated flag.
    """

    name: str
    default: object
    accepts: Constraint
    cli: str | None = None

    def check(self, value):
        """``value`` normalized, or ``ValueError`` naming the parameter."""
        if isinstance(self.accepts, Registered):
            # The registry's message names what it knows.
            return self.accepts.normalize(value)
        try:
            return self.accepts.normalize(value)
        except _REFUSALS:
            raise ValueError(
                f"{self.name} must be {self.accepts.text}, got {value!r}"
            ) from None

    @property
    def flag(self):
        """The command-line flag, or None (see :attr:`cli`)."""
        if self.cli is not None:
            return self.cli[len("flag:"):] if self.cli.startswith("flag:") else None
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.default is True else f"--{dashed}"


def _registry(module, available, check):
    """A :class:`Registered` constraint over ``sklearn_relu.<module>``'s
    registry: ``available()`` its names, ``check(value)`` raises for a value it
    does not know. Imported when first used: the registries' modules import
    the estimator's."""

    def function(name):
        return getattr(importlib.import_module(f"sklearn_relu.{module}"), name)

    return Registered(lambda: function(available)(), lambda value: function(check)(value))


_POSITIVE = Integer(1)
_FRACTION = Real(0, 1, "neither")

#: Every ``ReLURegressor`` parameter, in the order of its signature.
PARAMETERS = (
    Parameter("solver", "sgd", _registry(
        "compression", "available_compressors", "get_compressor"
    )),
    Parameter("bits", 8, Integer(2, 32, text="an integer in [2, 32]")),
    Parameter("bucket_size", None, AnyOf(
        NoneValue(), Integer(1, 2**32 - 1),
        text="None or a positive integer below 2**32 (it travels as a uint32)",
    )),
    Parameter("encoding", "packed", Options("packed", "elias")),
    Parameter("momentum", 0.9, Real(0, 1, "left")),
    Parameter("k", 0.1, AnyOf(Integer(1), Real(0, 1, "right"))),
    Parameter("error_feedback", False, Boolean()),
    Parameter("aggregation", "mean", _registry(
        "aggregation", "available_aggregators", "get_aggregator"
    )),
    Parameter("n_byzantine", 0, Integer(0)),
    Parameter("attack", "sign_flip", _registry("attacks", "available_attacks", "get_attack")),
    Parameter("worker_momentum", 0.0, Real(0, 1, "left")),
    Parameter("shards", None, AnyOf(NoneValue(), Splitter()),
              cli="an object (DirichletShards): give it from Python"),
    Parameter("batch_size", "auto", AnyOf(Options("auto"), _POSITIVE)),
    Parameter("local_steps", 1, _POSITIVE),
    Parameter("learning_rate", "auto", AnyOf(
        Options("auto"), Real(0, math.inf, "neither"),
        text="'auto' or a positive finite float",
    )),
    Parameter("average", False, AnyOf(
        Boolean(), Integer(0), text="a bool or an integer >= 0"
    )),
    Parameter("max_iter", 200, _POSITIVE),
    Parameter("tol", 1e-4, AnyOf(NoneValue(), Real(0, 1, "left"))),
    Parameter("n_iter_no_change", 5, _POSITIVE),
    Parameter("init", "spectral", AnyOf(Options("spectral", "zeros", "random"), Array()),
              cli="flag:--init"),
    Parameter("n_ensemble", 1, _POSITIVE),
    Parameter("fit_intercept", True, Boolean(), cli="flag:--no-intercept"),
    Parameter("early_stopping", False, Boolean()),
    Parameter("validation_fraction", 0.1, _FRACTION),
    Parameter("n_workers", None, AnyOf(NoneValue(), _POSITIVE)),
    Parameter("backend", "inprocess", _registry(
        "backends", "available_backends", "get_backend"
    ),
              cli="the command line's --backend adds 'auto' (mpi under mpiexec) "
                  "and the MPI backend's own options"),
    Parameter("random_state", None, Seed()),
    Parameter("verbose", 0, AnyOf(Boolean(), Integer(0), text="an integer >= 0")),
    Parameter("warm_start", False, Boolean(),
              cli="a command-line fit starts from nothing: there is no model to continue"),
    Parameter("checkpoint", None, AnyOf(NoneValue(), Path())),
    Parameter("checkpoint_every", 1, _POSITIVE),
    Parameter("callback", None, AnyOf(NoneValue(), Function()),
              cli="a Python function: give it from Python"),
)

_BY_NAME = {parameter.name: parameter for parameter in PARAMETERS}


def validated(params):
    """The estimator's parameters ``params`` (``get_params(deep=False)``),
    each checked and normalized, as attributes of a namespace."""
    unknown = set(params) - set(_BY_NAME)
    if unknown:  # a subclass's parameter the table does not know
        raise ValueError(f"parameters without an entry in the table: {sorted(unknown)}")
    return SimpleNamespace(**{
        name: _BY_NAME[name].check(value) for name, value in params.items()
    })


# -- the command line -------------------------------------------------------------
def parameter_help(name, docstring=None):
    """The first sentence of parameter ``name``'s entry in ``docstring``
    (``ReLURegressor``'s by default): what ``--help`` says of its flag."""
    if docstring is None:
        from ._estimator import ReLURegressor

        docstring = ReLURegressor.__doc__
    lines = docstring.splitlines()
    start = next(
        i for i, line in enumerate(lines)
        if re.match(rf"\s*{re.escape(name)} : ", line)
    )
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = []
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line.strip())
    # Docstring markup reads badly in a terminal.
    text = re.sub(r":\w+:`~?(?:[\w.]*\.)?([^`]+)`", r"\1", " ".join(body))
    text = text.replace("``", "")
    # Sentences end at a full stop after a word, not inside "0 .. n".
    sentences = re.split(r"(?<=[^.\s]\.)\s+(?=[A-Z(\"'])", text)
    said = sentences[0]
    for sentence in sentences[1:]:
        if len(said) >= _SHORT_HELP:
            break
        said += " " + sentence
    return said.rstrip(".")


#: A first sentence shorter than this is followed by the next in ``--help``.
_SHORT_HELP = 60


def add_arguments(group, overrides=None):
    """Add a flag for every parameter that has one to the argparse ``group``;
    the values land under the parameter's name. ``overrides``: keyword
    arguments of ``add_argument`` to use for a parameter, by name."""
    overrides = overrides or {}
    for parameter in PARAMETERS:
        flag = parameter.flag
        if flag is None:
            continue
        kwargs = _argument(parameter)
        kwargs.update(overrides.get(parameter.name, {}))
        group.add_argument(flag, dest=parameter.name, **kwargs)


def _argument(parameter):
    """``add_argument``'s keyword arguments for ``parameter``'s flag."""
    help_text = parameter_help(parameter.name)
    accepts = parameter.accepts
    if isinstance(accepts, Boolean):
        if parameter.default is True:
            help_text = f"{parameter.name}=False; {help_text[0].lower()}{help_text[1:]}"
        action = "store_false" if parameter.default is True else "store_true"
        return {"action": action, "default": parameter.default, "help": help_text}
    default = parameter.default
    shown = "none" if default is None else default
    kwargs = {"default": default, "help": f"{help_text} (default: {shown})"}
    choices = accepts.choices()
    if choices is not None:
        kwargs["choices"] = choices
    else:
        kwargs["type"] = _flag_type(parameter)
    if isinstance(default, bool):
        # A switch that also takes a value (--average, or --average 1000).
        kwargs.update(nargs="?", const=not default)
    return kwargs


def _flag_type(parameter):
    """The argparse ``type`` of ``parameter``'s flag: parses the text, then
    checks it as ``fit`` will, so that a bad value is a usage error."""

    def parse(text):
        try:
            return parameter.check(parameter.accepts.parse(text))
        except _REFUSALS:
            import argparse

            raise argparse.ArgumentTypeError(
                f"must be {parameter.accepts.text}, got {text!r}"
            ) from None

    parse.__name__ = parameter.name
    return parse
