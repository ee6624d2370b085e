"""``python -m sklearn_relu``: fit a ReLU from data files, on one machine or under MPI.

One module a part of the command line:

``_main``
    the parser (``COMMANDS``: subcommand name -> function adding its parser)
    and :func:`main`;
``_fit``, ``_report``
    ``fit``: its flags (the estimator's generated from
    ``sklearn_relu._params``) and its run; the scores and summary it prints;
``_predict``
    ``predict``;
``_scripts``
    ``reproduce`` and ``benchmark``, which run a source checkout's scripts;
``_data``, ``_csv``, ``_parquet``, ``_output``
    reading data files; writing a file only when complete;
``_launcher``
    what an MPI launcher tells a process before MPI starts.
"""

from ._data import load_data, load_features
from ._main import COMMANDS, build_parser, main
from ._output import save_atomically

__all__ = ["main", "build_parser", "load_data", "load_features", "save_atomically", "COMMANDS"]
