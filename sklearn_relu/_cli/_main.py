"""The parser of ``python -m sklearn_relu`` and :func:`main`.

Subcommands live in :data:`COMMANDS` (name -> function adding its parser);
each parser sets ``run``, the function that executes it and returns the exit
status.
"""

import argparse
import sys
import warnings

from .. import __version__
from ._fit import add_fit
from ._launcher import launcher_rank
from ._predict import add_predict
from ._scripts import add_benchmark, add_reproduce

# Subcommand name -> function adding its parser.
COMMANDS = {
    "fit": add_fit,
    "predict": add_predict,
    "reproduce": add_reproduce,
    "benchmark": add_benchmark,
}


class _Parser(argparse.ArgumentParser):
    """An argument parser that, under ``mpiexec``, reports a bad command line
    from rank 0 only: every rank parses the same arguments, and N copies of
    one message buried it."""

    def error(self, message):
        if launcher_rank() not in (None, 0):
            self.exit(2)
        self._report(message)

    def _report(self, message):
        super().error(message)  # the usage, then the message


class _BriefParser(_Parser):
    """A command's parser whose errors are one line and a pointer to --help
    (a command's usage runs to thirty lines, and hid the message)."""

    def _report(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def build_parser():
    """The argument parser of ``python -m sklearn_relu``."""
    parser = _Parser(
        prog="python -m sklearn_relu",
        description="Fit ReLU models by SGD and compressed SGD (QSGD, IntSGD, "
        "signs, TernGrad, top-k), on one machine, on joblib workers, or across "
        "MPI ranks.",
    )
    parser.add_argument("--version", action="version", version=f"sklearn_relu {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", dest="command", required=True, parser_class=_BriefParser
    )
    for add in COMMANDS.values():
        add(subparsers)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status.

    >>> main(["fit", "missing.npz", "--out", "model.skops", "--backend", "inprocess"])
    Traceback (most recent call last):
    ...
    ValueError: data file 'missing.npz' does not exist
    """
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return args.run(args)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as a command-line user reads it: its message, not the
    package's source line that raised it."""
    print(f"warning ({category.__name__}): {message}", file=file or sys.stderr, flush=True)
