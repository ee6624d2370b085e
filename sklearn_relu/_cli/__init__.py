"""``python -m sklearn_relu``: fit a ReLU from data files, on one machine or under MPI.

Subcommands live in :data:`COMMANDS` (name -> function adding its parser);
each parser sets ``run``, the function that executes it and returns the exit
status.
"""

import argparse
import csv
import itertools
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from .._worker import shard_bounds
from ..aggregation import available_aggregators
from ..attacks import available_attacks
from ..backends._mpi import TOPOLOGIES
from ..compression import available_compressors, get_compressor

__all__ = ["main", "build_parser", "load_data", "load_features", "save_atomically"]

DATA_HELP = """\
data formats:
  .npz  arrays named X and y (and optionally sample_weight)
  .npy  X alone (memory-mapped); give y with --target y.npy
  .csv  comma-separated numbers, one row per sample, y in the last column or
        the one --target-column names; a first line of names is kept as the
        model's column names (feature_names_in_), and predict then picks a
        file's columns by those names. A first line that could
        be either (pandas' default names 0,1,2,..., or a missing value such as
        NA) is an error: say which with --csv-header yes|no

under MPI (every rank reads the same file and trains on its own shard):
  mpiexec -n 4 python -m mpi4py -m sklearn_relu fit data.npz --solver qsgd \\
      --bits 8 --out model.skops
  Only rank 0 writes the model. --backend auto picks mpi under mpiexec.

The model is written to a temporary file next to --out and moved into place
when complete, so a fit that fails or is killed leaves an earlier model at
--out untouched. A .skops file (the default for any suffix but .joblib/.pkl)
is safe to load from elsewhere (skops.io refuses unknown types); a .joblib
file is a pickle, which runs code when loaded: load only your own. Use the
model with 'python -m sklearn_relu predict MODEL DATA > predictions.csv'.
"""

# Environment variables that MPI launchers set in the processes they start.
_MPI_LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


def load_data(path, target=None, target_column=None, shard=None, csv_header="auto",
              sample_weight_column=None):
    """``(X, y, sample_weight)`` from a ``.npz``, ``.npy`` or ``.csv`` file.

    Parameters
    ----------
    path : str or Path
    target : str or Path, optional
        A ``.npy`` file with ``y``; required when ``path`` is a ``.npy``.
    target_column : str or int, optional
        The ``.csv`` column holding ``y``: its name in the header, or its
        index (negative counts from the end). Default: the last column.
    shard : tuple (index, count), optional
        Only the rows of shard ``index`` of ``count`` equal contiguous shards
        (as ``MPIBackend(data="local")`` takes them). Only for ``.npy`` data,
        which is memory-mapped, so that only those rows are ever read.
    csv_header : {"auto", "yes", "no"}, default="auto"
        Whether a CSV's first line is column names. ``"auto"`` skips a line
        of names, reads a line of numbers, and raises when it cannot tell:
        no row is ever dropped or read silently by a guess.
    sample_weight_column : str or int, optional
        The ``.csv`` column holding the sample weights (a name or an index,
        as ``target_column``); it is not a feature.

    Returns
    -------
    X : ndarray or pandas.DataFrame of shape (n_samples, n_features)
        A DataFrame with the header's column names when a ``.csv`` has a
        header and pandas is installed, so that the model keeps them.
    y : ndarray of shape (n_samples,)
    sample_weight : ndarray of shape (n_samples,) or None
    """
    X, y, sample_weight, names = _read_data(
        path, target, target_column, shard, csv_header, sample_weight_column
    )
    return _with_names(X, names), y, sample_weight


def _read_data(path, target=None, target_column=None, shard=None, csv_header="auto",
               sample_weight_column=None):
    """:func:`load_data`'s arrays, with ``X`` an array, and the names of its
    columns (a ``.csv`` header's; else None)."""
    path = Path(path)
    suffix = _check_data_file(path)
    if target is not None and suffix != ".npy":
        raise ValueError("--target is only for .npy data files")
    if target_column is not None and suffix != ".csv":
        raise ValueError("--target-column is only for .csv data files")
    if sample_weight_column is not None and suffix != ".csv":
        raise ValueError(
            "--sample-weight-column is only for .csv data files (a .npz file "
            "holds them as an array named sample_weight)"
        )
    if shard is not None and suffix != ".npy":
        raise ValueError(
            "--data local reads each rank's rows from a memory-mapped .npy file: "
            f"save X and y as .npy files (got {path.name!r})"
        )
    sample_weight = names = None
    if suffix == ".npz":
        with np.load(path) as archive:
            missing = {"X", "y"} - set(archive.files)
            if missing:
                raise ValueError(
                    f"{path} must hold arrays named 'X' and 'y'; it has "
                    f"{sorted(archive.files)}"
                )
            X, y = archive["X"], archive["y"]
            if "sample_weight" in archive.files:
                sample_weight = archive["sample_weight"]
    elif suffix == ".npy":
        if target is None:
            raise ValueError(f"{path} holds X only: give y with --target y.npy")
        X = np.load(path, mmap_mode="r")
        y = np.load(target, mmap_mode="r")
        if shard is not None:
            start, stop = shard_bounds(X.shape[0], shard[1], shard[0])
            X, y = X[start:stop], y[start:stop]
        y = np.array(y)
    else:
        names, table = _load_csv(path, csv_header)
        if table.shape[1] < 2:
            raise ValueError(f"{path} needs at least two columns: features, then y")
        column = _column_index(path, names, table.shape[1], target_column)
        y = table[:, column]
        apart = {column}
        if sample_weight_column is not None:
            weights = _column_index(path, names, table.shape[1], sample_weight_column,
                                    flag="--sample-weight-column")
            if weights == column:
                raise ValueError(
                    f"--sample-weight-column {sample_weight_column!r} is the target "
                    f"column of {path}"
                )
            sample_weight = table[:, weights]
            apart.add(weights)
        keep = [i for i in range(table.shape[1]) if i not in apart]
        X = table[:, keep]
        names = None if names is None else [names[i] for i in keep]
    return X, y, sample_weight, names


def load_features(path, n_features, feature_names=None, target_column=None):
    """``X`` for prediction from a ``.npz`` (``X``), ``.npy`` or ``.csv`` file.

    A ``.csv`` may be the training file itself: with a header and a model that
    kept ``feature_names``, the columns are picked by name (in the model's
    order); otherwise a table of ``n_features + 1`` columns drops the target
    column (``target_column``, default the last).
    """
    X, names, _ = _read_features(path, n_features, feature_names, target_column)
    return _with_names(X, names)


def _read_features(path, n_features, feature_names=None, target_column=None, ignore=None):
    """:func:`load_features`'s ``X`` as an array, the names of its columns (or
    None), and whether they were picked by the model's ``feature_names``;
    a ``.csv`` column named ``ignore`` (ids) is not read."""
    path = Path(path)
    suffix = _check_data_file(path)
    if ignore is not None and suffix != ".csv":
        raise ValueError("--id-column is only for .csv data files")
    if suffix == ".npz":
        with np.load(path) as archive:
            if "X" not in archive.files:
                raise ValueError(
                    f"{path} must hold an array named 'X'; it has {sorted(archive.files)}"
                )
            return archive["X"], None, False
    if suffix == ".npy":
        return np.load(path, mmap_mode="r"), None, False
    names, table = _load_csv(path, ignore=ignore)
    if names is not None and feature_names is not None:
        missing = [name for name in feature_names if name not in names]
        if missing:
            raise ValueError(
                f"{path} lacks the columns the model was fitted on: {missing}"
            )
        columns = [names.index(name) for name in feature_names]
        return table[:, columns], list(feature_names), True
    if table.shape[1] == n_features + 1:
        column = _column_index(path, names, table.shape[1], target_column)
        keep = [i for i in range(table.shape[1]) if i != column]
        return table[:, keep], None if names is None else [names[i] for i in keep], False
    if table.shape[1] != n_features:
        raise ValueError(
            f"{path} has {table.shape[1]} columns; the model needs {n_features} "
            f"features (or {n_features + 1} columns with the target)"
        )
    return table, names, False


def _check_data_file(path):
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    if suffix not in (".npz", ".npy", ".csv"):
        raise ValueError(
            f"unsupported data file {path.name!r}: use .npz (X, y), .npy (with "
            "--target) or .csv (y in the last column)"
        )
    return suffix


def _column_index(path, names, n_columns, target_column, flag="--target-column"):
    """The index of the ``.csv`` column ``target_column`` (a name or an index),
    which the command line gives with ``flag``."""
    if target_column is None:
        return n_columns - 1
    try:
        index = int(target_column)
    except ValueError:
        if names is None:
            raise ValueError(
                f"{flag} {target_column!r} is a name, but {path} has no "
                "header line; give the column's index"
            ) from None
        if target_column not in names:
            raise ValueError(
                f"{path} has no column named {target_column!r}; it has {names}"
            ) from None
        return names.index(target_column)
    if not -n_columns <= index < n_columns:
        raise ValueError(
            f"{flag} {index} is out of range for {path}'s {n_columns} columns"
        )
    return index % n_columns


def _with_names(X, names):
    """``X`` as a DataFrame with column ``names`` where pandas is installed."""
    if names is None:
        return X
    try:
        import pandas as pd
    except ImportError:
        return X
    return pd.DataFrame(X, columns=names)


def _keep_names(model, names):
    """Give ``model`` the ``.csv`` header's column ``names`` as
    ``feature_names_in_`` where it was fitted on an array (no pandas), as a
    DataFrame would have: ``predict`` then picks a file's columns by name."""
    first = model.steps[0][1] if hasattr(model, "steps") else model
    if names is not None and not hasattr(first, "feature_names_in_"):
        first.feature_names_in_ = np.asarray(names, dtype=object)


# Fields that spreadsheets and pandas write for a missing value.
_MISSING = {"", "na", "n/a", "nan", "null", "none", "-", "?"}


def _number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


def _csv_has_header(path, first):
    """Whether the first line ``first`` is column names; raise when unsure."""
    fields = [field.strip().strip('"') for field in first.split(",")]
    unsure = None
    if any(field.lower() in _MISSING for field in fields):
        unsure = "has a missing value (such as NA or an empty field)"
    elif all(_number(field) for field in fields):
        if fields == [str(i) for i in range(len(fields))] and len(fields) > 1:
            unsure = "reads 0,1,2,...: pandas' default column names, or data"
        else:
            return False
    elif any(_number(field) for field in fields):
        unsure = "mixes numbers and names"
    if unsure:
        raise ValueError(
            f"cannot tell whether the first line of {path} is column names or "
            f"data: it {unsure}. Say which with --csv-header yes or no "
            "(load_data(..., csv_header='yes'|'no'))"
        )
    return True


def _load_csv(path, csv_header="auto", ignore=None):
    """``(names, table)``: the header's column names (or None) and the numbers,
    without the column named ``ignore`` (an id column: text, not read)."""
    if csv_header not in ("auto", "yes", "no"):
        raise ValueError(
            f"csv_header must be 'auto', 'yes' or 'no', got {csv_header!r}"
        )
    try:
        return _read_csv(path, csv_header, ignore)
    except UnicodeDecodeError:
        raise ValueError(_not_utf8(path)) from None


def _not_utf8(path):
    """Where a file stops being UTF-8 text, in words."""
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                return (
                    f"{path}, line {number}: byte {line[error.start]:#04x} at column "
                    f"{error.start + 1} is not UTF-8 text; save the file as UTF-8 "
                    "(Excel: CSV UTF-8)"
                )
    return f"{path} is not UTF-8 text; save the file as UTF-8"


def _read_csv(path, csv_header, ignore):
    # utf-8-sig: a byte-order mark (Excel writes one) is not part of the data.
    with open(path, encoding="utf-8-sig") as file:
        first = file.readline()
        second = next((line for line in file if line.strip()), "")
    if not first.strip():
        raise ValueError(f"{path} is empty: it has no data rows")
    # Before the header is guessed (a first line of data must not be taken for
    # one); two lines without a comma and with the same other separator, so
    # that a one-column file whose name holds a ';' still reads.
    hint = _separator_hint(first.strip().split(","))
    if hint and hint == _separator_hint(second.strip().split(",")):
        raise ValueError(f"{path}, line 1: no comma{hint}")
    if csv_header == "auto":
        skip = int(_csv_has_header(path, first))
    else:
        skip = int(csv_header == "yes")
    if not _has_rows(path, skip):
        raise ValueError(f"{path} has column names but no data rows")
    names = [f.strip().strip('"') for f in first.rstrip("\r\n").split(",")] if skip else None
    if names is not None:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:  # the model picks columns by name: each must be one column
            raise ValueError(
                f"{path}, line 1: the column names {repeated} appear more than once"
            )
    ignored, usecols = None, None
    if ignore is not None:
        if names is None or ignore not in names:
            raise ValueError(
                f"{path} has no column named {ignore!r}"
                + (f"; it has {names}" if names else " (it has no header line)")
            )
        ignored = names.index(ignore)
        usecols = [i for i in range(len(names)) if i != ignored]
    try:
        table = np.loadtxt(
            path, delimiter=",", skiprows=skip, ndmin=2, encoding="utf-8-sig",
            usecols=usecols,
        )
    except ValueError as error:
        # NumPy's message (about usecols, or a field) does not say where.
        raise ValueError(
            _csv_problem(path, skip, ignored) or f"{path}: {error}"
        ) from None
    if ignored is not None:
        names = [name for i, name in enumerate(names) if i != ignored]
    if names is not None and len(names) != table.shape[1]:
        raise ValueError(
            f"{path}, line 1: the header names {len(names)} columns, the rows "
            f"have {table.shape[1]}"
        )
    return names, table


def _has_rows(path, skip):
    with open(path, encoding="utf-8-sig") as file:
        return any(line.strip() for line in itertools.islice(file, skip, None))


def _csv_problem(path, skip, ignored=None):
    """The first ragged or non-numeric line of a CSV file (but for the column
    ``ignored``), described."""
    expected = None
    with open(path, encoding="utf-8-sig") as file:
        for number, line in enumerate(file, start=1):
            if number <= skip or not line.strip():
                continue
            fields = line.rstrip("\r\n").split(",")
            if expected is None:
                expected = len(fields)
            elif len(fields) != expected:
                return (
                    f"{path}, line {number}: {len(fields)} fields where the rows "
                    f"above have {expected}"
                )
            for field in (f for i, f in enumerate(fields) if i != ignored):
                try:
                    float(field)
                except ValueError:
                    return (
                        f"{path}, line {number}: {field.strip()!r} is not a number"
                        + _separator_hint(fields)
                    )
    return None


def _separator_hint(fields):
    """Why a line may be one field: another separator than the comma."""
    if len(fields) == 1 and not _number(fields[0]):
        for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if separator in fields[0]:
                return (
                    f"; the rows seem separated by {name}, and only commas are read "
                    "(with '.' as the decimal point): save the file as comma-separated "
                    "values"
                )
    return ""


def save_atomically(obj, path):
    """Write ``obj`` to ``path`` through a temporary file and ``os.replace``.

    skops.io, or joblib for a ``.joblib`` / ``.pkl`` path (see
    :func:`sklearn_relu._persist.save_model`). Readers never see a partly
    written file, and an earlier file at ``path`` stays as it was unless the
    new one was written completely.
    """
    from .._persist import save_model

    check_writable(path)
    save_model(obj, path)


def check_writable(path):
    """Raise a ValueError naming ``path`` unless a file can be written there:
    checked before a fit, not after it."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a directory, not a file name")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(
            f"--out {str(path)!r}: directory {str(parent)!r} does not exist"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"--out {str(path)!r}: directory {str(parent)!r} is not writable"
        )


def _under_mpi_launcher():
    return any(name in os.environ for name in _MPI_LAUNCHER_VARIABLES)


# The rank an MPI launcher gave this process, read before MPI starts.
_LAUNCHER_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def _launcher_rank():
    """This process's rank under an MPI launcher, else None."""
    for name in _LAUNCHER_RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def _make_backend(args):
    """The backend for ``--backend``; and whether this process writes output."""
    name = args.backend
    if name == "auto":
        name = "mpi" if _under_mpi_launcher() else "inprocess"
    if name == "mpi":
        from ..backends import MPIBackend

        backend = MPIBackend(topology=args.topology, data=args.data_mode)
        if backend.size == 1 and not _under_mpi_launcher():
            # Legal (a one-rank MPI job), but usually a forgotten launcher.
            print("note: --backend mpi without mpiexec runs one MPI rank, one worker; "
                  "launch with: mpiexec -n N python -m mpi4py -m sklearn_relu fit ...",
                  file=sys.stderr, flush=True)
        return backend, backend.rank == 0, backend
    # Flags that only an MPI run reads must not be dropped without a word.
    given = [flag for flag, value, default in (
        ("--topology", args.topology, "auto"), ("--data", args.data_mode, "all"),
    ) if value != default]
    if given:
        where = "outside mpiexec" if args.backend == "auto" else f"with --backend {name}"
        raise ValueError(
            f"{' and '.join(given)} apply to MPI runs (under mpiexec, or --backend "
            f"mpi), not {where}"
        )
    if name == "joblib":
        from ..backends import JoblibBackend

        return JoblibBackend(), True, None
    return name, True, None


def _flag_value(convert, expected):
    """An argparse type: ``convert(text)``, or an error saying what ``expected``
    values are (argparse's own names the converting function)."""

    def parse(text):
        try:
            return convert(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {expected}"
            ) from None

    return parse


_positive_int_or_auto = _flag_value(
    lambda text: text if text == "auto" else int(text), "'auto' or a whole number"
)
_learning_rate = _flag_value(
    lambda text: text if text == "auto" else float(text), "'auto' or a number"
)
_optional_int = _flag_value(
    lambda text: None if text.lower() == "none" else int(text),
    "'none' or a whole number",
)
_int = _flag_value(int, "a whole number")
_float = _flag_value(float, "a number")
_optional_float = _flag_value(
    lambda text: None if text.lower() == "none" else float(text),
    "'none' or a number",
)


class _Parser(argparse.ArgumentParser):
    """An argument parser that, under ``mpiexec``, reports a bad command line
    from rank 0 only: every rank parses the same arguments, and N copies of
    one message buried it."""

    def error(self, message):
        if _launcher_rank() not in (None, 0):
            self.exit(2)
        self._report(message)

    def _report(self, message):
        super().error(message)  # the usage, then the message


class _BriefParser(_Parser):
    """A command's parser whose errors are one line and a pointer to --help
    (a command's usage runs to thirty lines, and hid the message)."""

    def _report(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _test_size(text):
    """A share of the rows strictly between 0 and 1, or a whole number of rows
    (at least 2: the held-out R^2 needs two)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if 0 < value < 1:
        return value
    if value >= 2 and value.is_integer():
        return int(value)
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither a share of the rows strictly between 0 and 1 (such as 0.2) "
        "nor a whole number of rows, at least 2 (the held-out R^2 needs two)"
    )


def _count_or_share(text):
    try:
        return int(text)
    except ValueError:
        return float(text)


#: An integer count ("10") or a fraction ("0.1").
_top_k = _flag_value(_count_or_share, "a whole number of coordinates or a share")


def _add_fit(subparsers):
    fit = subparsers.add_parser(
        "fit",
        help="fit a ReLURegressor to a data file and save it (skops or joblib)",
        description="Fit ReLURegressor (SGD, or any compressed SGD of --solver) to "
        "a data file and save it.",
        epilog=DATA_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("data", help="training data: .npz, .npy or .csv (see below)")
    fit.add_argument("--target", help="y as a .npy file, when DATA is a .npy with X")
    fit.add_argument(
        "--target-column",
        metavar="NAME|INDEX",
        help="the .csv column holding y: its header name or its index "
        "(negative from the end; default: the last)",
    )
    fit.add_argument(
        "--sample-weight-column",
        metavar="NAME|INDEX",
        help="the .csv column holding each row's sample weight (not a feature)",
    )
    fit.add_argument(
        "--out",
        required=True,
        help="where to write the fitted model: .skops (safe to share) or "
        ".joblib/.pkl (a pickle)",
    )
    fit.add_argument(
        "--test-size",
        type=_test_size,
        default=None,
        help="hold out this share of the rows (strictly between 0 and 1), or this "
        "many rows (a whole number, at least 2), and report the held-out R^2 too",
    )
    fit.add_argument(
        "--standardize",
        action="store_true",
        help="fit Pipeline(StandardScaler(), ReLURegressor()): advised unless "
        "the features are already on one scale",
    )
    fit.add_argument(
        "--csv-header", choices=["auto", "yes", "no"], default="auto",
        help="whether a .csv's first line is column names (default: tell, or "
        "raise when unsure)",
    )
    model = fit.add_argument_group("estimator (see ReLURegressor)")
    model.add_argument("--solver", choices=available_compressors(), default="sgd")
    model.add_argument(
        "--bits", type=_int, default=8,
        help="qsgd: bits a coordinate, 2..16; intsgd: 8, 16 or 32 (default 8)",
    )
    model.add_argument(
        "--bucket-size", type=_optional_int, default=None,
        help="qsgd: coordinates sharing one norm (default: the whole vector)",
    )
    model.add_argument(
        "--encoding", choices=["packed", "elias"], default="packed",
        help="qsgd wire format: bits a coordinate, or Elias coding of the "
        "nonzero levels (smaller at few bits; default packed)",
    )
    model.add_argument("--momentum", type=_float, default=0.9, help="signum (default 0.9)")
    model.add_argument(
        "--k", type=_top_k, default=0.1,
        help="topk: coordinates sent, an integer or a fraction of d (default 0.1)",
    )
    model.add_argument(
        "--error-feedback", action="store_true", help="signsgd, topk: EF memory"
    )
    model.add_argument(
        "--aggregation", choices=available_aggregators(), default="mean",
        help="how the workers' vectors combine (majority: sign of the sum)",
    )
    model.add_argument(
        "--n-byzantine", type=_int, default=0,
        help="workers 0..N-1 send --attack's vector instead of their gradient "
        "(to test a robust --aggregation; default 0)",
    )
    model.add_argument(
        "--attack", choices=available_attacks(), default="sign_flip",
        help="what the --n-byzantine workers send (default sign_flip)",
    )
    model.add_argument("--batch-size", type=_positive_int_or_auto, default="auto")
    model.add_argument("--learning-rate", type=_learning_rate, default="auto")
    model.add_argument("--max-iter", type=_int, default=200, help="epochs (default 200)")
    model.add_argument(
        "--tol", type=_optional_float, default=1e-4, help="'none': run all epochs"
    )
    model.add_argument("--n-iter-no-change", type=_int, default=5)
    model.add_argument(
        "--init", choices=["spectral", "zeros", "random"], default="spectral"
    )
    model.add_argument("--n-ensemble", type=_int, default=1)
    model.add_argument("--no-intercept", action="store_true", help="fit b = 0")
    model.add_argument("--early-stopping", action="store_true")
    model.add_argument("--validation-fraction", type=_float, default=0.1)
    model.add_argument("--random-state", type=_optional_int, default=None)
    model.add_argument("--verbose", type=_int, default=0)
    model.add_argument(
        "--checkpoint", metavar="PATH", default=None,
        help="save the fit's state to PATH every --checkpoint-every epochs; the "
        "same command run again after a crash resumes from it (bit-identical "
        "model) and removes it at the end",
    )
    model.add_argument(
        "--checkpoint-every", metavar="K", type=_int, default=1,
        help="epochs between checkpoints (default 1): a killed fit redoes at most K",
    )
    where = fit.add_argument_group("where the workers run")
    where.add_argument(
        "--backend",
        choices=["auto", "inprocess", "joblib", "mpi"],
        default="auto",
        help="auto: mpi when started by mpiexec, else inprocess",
    )
    where.add_argument(
        "--n-workers",
        type=_optional_int,
        default=None,
        help="workers (default: 1 in-process, the CPUs on joblib, the ranks on MPI)",
    )
    where.add_argument(
        "--topology",
        choices=list(TOPOLOGIES),
        default="auto",
        help="MPI: allreduce (sum while compressed: sgd, intsgd), allgather (every "
        "rank decodes all messages), master-worker; auto: allreduce for intsgd, "
        "else allgather",
    )
    where.add_argument(
        "--data",
        dest="data_mode",
        choices=["all", "local"],
        default="all",
        help="MPI: every rank reads all rows, or (local) only its own shard's rows "
        "of a memory-mapped .npy file",
    )
    fit.add_argument("--json", action="store_true", help="print the summary as JSON")
    fit.set_defaults(run=_run_fit)


def _run_fit(args):
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from .._estimator import ReLURegressor

    started = time.perf_counter()
    backend, writer, mpi = _make_backend(args)
    try:
        if writer:
            check_writable(args.out)
        shard = None
        if mpi is not None and args.data_mode == "local":
            shard = (mpi.rank, mpi.size)
        X, y, sample_weight, names = _read_data(
            args.data, args.target, args.target_column, shard,
            csv_header=args.csv_header,
            sample_weight_column=args.sample_weight_column,
        )
        X = _with_names(X, names)
        test = None
        if args.test_size is not None:
            _check_test_size(args.test_size, X.shape[0], shard is not None)
            arrays = [X, y] + ([] if sample_weight is None else [sample_weight])
            # Every MPI rank draws the same split from --random-state.
            split = train_test_split(
                *arrays, test_size=args.test_size, random_state=args.random_state or 0
            )
            X, test, y, y_test = split[0], split[1], split[2], split[3]
            test = (test, y_test, split[5] if sample_weight is not None else None)
            sample_weight = split[4] if sample_weight is not None else None
        est = ReLURegressor(
            solver=args.solver,
            bits=args.bits,
            bucket_size=args.bucket_size,
            encoding=args.encoding,
            momentum=args.momentum,
            k=args.k,
            error_feedback=args.error_feedback,
            aggregation=args.aggregation,
            n_byzantine=args.n_byzantine,
            attack=args.attack,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            max_iter=args.max_iter,
            tol=args.tol,
            n_iter_no_change=args.n_iter_no_change,
            init=args.init,
            n_ensemble=args.n_ensemble,
            fit_intercept=not args.no_intercept,
            early_stopping=args.early_stopping,
            validation_fraction=args.validation_fraction,
            n_workers=args.n_workers,
            backend=backend,
            random_state=args.random_state,
            verbose=args.verbose,
            checkpoint=args.checkpoint,
            checkpoint_every=args.checkpoint_every,
        )
        # Under --data local each rank holds only its rows: the scaler's
        # statistics and the reported scores are summed over all ranks.
        ranks = mpi if shard is not None else None
        if args.standardize and ranks is not None:
            scaler = _standard_scaler_over_ranks(X, ranks)
            est.fit(scaler.transform(X), y, sample_weight)
            model = Pipeline([("scale", scaler), ("relu", est)])
        elif args.standardize:
            model = Pipeline([("scale", StandardScaler()), ("relu", est)])
            model.fit(X, y, relu__sample_weight=sample_weight)
        else:
            model = est.fit(X, y, sample_weight)
        scores = _scores(model, (X, y, sample_weight), test, ranks)
        _keep_names(model, names)
        if writer:
            # The backend object (a communicator, a socket) is not part of the
            # model: keep its name, which any process can use again.
            est.set_params(backend=_backend_name(args))
            save_atomically(model, args.out)
            _report(model, scores, args, started)
    except Exception as exc:
        if mpi is not None and mpi.size > 1:
            # One failing rank must not leave the others waiting in a
            # collective forever: end the whole job.
            print(f"error on MPI rank {mpi.rank}: {in_cli_words(str(exc))}",
                  file=sys.stderr, flush=True)
            mpi.abort(1)
        raise
    return 0


def _check_test_size(test_size, n_rows, per_rank):
    """Both sides of the split need two rows: an R^2 needs two."""
    # scikit-learn's own rule for a share: the test side rounds up.
    n_test = test_size if isinstance(test_size, int) else math.ceil(test_size * n_rows)
    if n_test < 2 or n_rows - n_test < 2:
        rows = f"{n_rows} rows" + (" of this MPI rank" if per_rank else "")
        raise ValueError(
            f"--test-size {test_size} holds out {min(n_test, n_rows)} of the {rows} and"
            f" trains on {max(n_rows - n_test, 0)}: each side needs at least 2"
        )


def _backend_name(args):
    if args.backend == "auto":
        return "mpi" if _under_mpi_launcher() else "inprocess"
    return args.backend


def _standard_scaler_over_ranks(X, ranks):
    """A StandardScaler fitted to the rows of every rank (each holds its own)."""
    from sklearn.preprocessing import StandardScaler

    totals = ranks.sum_over_ranks(np.concatenate([[X.shape[0]], X.sum(axis=0)]))
    n, mean = totals[0], totals[1:] / totals[0]
    var = ranks.sum_over_ranks(((X - mean) ** 2).sum(axis=0)) / n
    scaler = StandardScaler().fit(X[:1])  # the attributes, then the real values
    scaler.mean_, scaler.var_, scaler.n_samples_seen_ = mean, var, int(n)
    # Constant columns are left unscaled, as StandardScaler does.
    scale = np.sqrt(var)
    scale[scale < 10 * np.finfo(scale.dtype).eps] = 1.0
    scaler.scale_ = scale
    return scaler


def _r2(model, X, y, sample_weight, ranks):
    """R^2 (sample-weighted, as ``model.score``), over every rank's rows when
    ``ranks`` is given."""
    if ranks is None:
        return model.score(X, y, sample_weight)
    w = np.ones(y.shape[0]) if sample_weight is None else np.asarray(sample_weight, float)
    total, weighted_y = ranks.sum_over_ranks([w.sum(), w @ y])
    mean = weighted_y / total
    residual, spread = ranks.sum_over_ranks(
        [w @ (y - model.predict(X)) ** 2, w @ (y - mean) ** 2]
    )
    if spread == 0:  # as scikit-learn's r2_score: 1 if perfect, else 0
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / spread


def _scores(model, train, test, ranks):
    """Rows and R^2 of the training and held-out sets (over every rank's rows
    when ``ranks`` is given: every rank must call this)."""

    def rows(X):
        n = X.shape[0]
        return int(n if ranks is None else ranks.sum_over_ranks([n])[0])

    scores = {"n_samples": rows(train[0]), "training_r2": _r2(model, *train, ranks)}
    if test is not None:
        scores.update(n_test=rows(test[0]), test_r2=_r2(model, *test, ranks))
    return scores


def _report(model, scores, args, started):
    est = model[-1] if hasattr(model, "steps") else model
    record = est.comm_record_
    summary = {
        "n_samples": scores["n_samples"],
        "n_features": int(est.n_features_in_),
        "n_workers": est.n_workers_,
        "steps": est.t_,
        "epochs": est.n_iter_,
        "final_loss": est.loss_curve_[-1],
        "training_r2": scores["training_r2"],
        **record.as_dict(),
        "seconds": time.perf_counter() - started,
        "out": str(args.out),
    }
    if "test_r2" in scores:
        summary["n_test"], summary["test_r2"] = scores["n_test"], scores["test_r2"]
    if args.json:
        print(json.dumps(summary))
        return
    # A message of no values: the header every message carries.
    header_nbytes = get_compressor(est.solver, est).message_nbytes(0)
    held_out = (
        f", held-out R^2 {summary['test_r2']:.4f} on {summary['n_test']} rows"
        if "test_r2" in summary
        else " (no held-out score: see --test-size)"
    )
    print(
        f"fitted {args.solver} on {summary['n_samples']} x {summary['n_features']}"
        f" with {est.n_workers_} worker(s) in {summary['seconds']:.1f} s: {est.t_} "
        f"steps ({est.n_iter_} epochs), loss {summary['final_loss']:.4g}, "
        f"training R^2 {summary['training_r2']:.4f}{held_out}\n"
        f"workers sent {record.n_messages} messages, {record.bytes_sent} bytes "
        f"({_share_of_float64(record, header_nbytes)}); compute "
        f"{record.compute_seconds:.3f} s, communication "
        f"{record.communicate_seconds:.3f} s\nmodel written to {args.out}"
    )


def _share_of_float64(record, header_nbytes):
    """The bytes sent as a share of float64's: "12.5% of float64", with a
    remark when the messages' headers (``header_nbytes`` each: the size of a
    message of no values) are most of the bytes."""
    if not record.float64_bytes:
        return "no messages"
    share = record.bytes_sent / record.float64_bytes
    text = f"{100 * share:.3g}% of float64"
    # float64_bytes counts the values alone. At a few features the header
    # of every message may outweigh its values; at d = 500 plain SGD's 8
    # bytes are 0.2% of a message, which is not worth a word.
    headers = record.n_messages * header_nbytes / record.bytes_sent
    if headers > 0.5:
        text += (
            f": every message's header counts, and at this size it dominates "
            f"({100 * headers:.3g}% of the bytes)"
        )
    return text


def _add_predict(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="predict with a saved model, writing a CSV of predictions",
        description="Load a model written by 'fit' and write its predictions for "
        "DATA (.npz with X, .npy, or .csv; a .csv may be the training file: its "
        "target column is dropped) as CSV to --out (default: standard output, "
        "for a pipe), one per row under the header 'prediction'. A .skops "
        "model is checked before loading: types beyond scikit-learn's, NumPy's "
        "and this package's are refused unless named with --trust. A "
        ".joblib/.pkl model is unpickled, which can run code: load only your own.",
    )
    parser.add_argument("model", help="the model file (.skops, or .joblib/.pkl)")
    parser.add_argument("data", help="the rows to predict: .npz (X), .npy or .csv")
    parser.add_argument(
        "--out", default="-",
        help="the CSV file to write; '-' (the default): standard output",
    )
    parser.add_argument(
        "--float-format", default="%.9g", type=_float_format, metavar="FORMAT",
        help="how each prediction is written, a %%-format (default %%.9g: float32 "
        "exactly, float64 to 1e-9; %%.17g writes float64 exactly)",
    )
    parser.add_argument(
        "--id-column", metavar="NAME",
        help="a .csv column (by its header name) of row ids, not a feature: "
        "written as the output's first column, as it reads",
    )
    parser.add_argument(
        "--target-column",
        metavar="NAME|INDEX",
        help="the .csv's target column to drop, when it has one (default: last)",
    )
    parser.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="TYPE",
        help="a type name to trust in a .skops file (repeatable)",
    )
    parser.set_defaults(run=_run_predict)


def _float_format(text):
    """A %-format that writes one float, such as %.9g."""
    try:
        written = text % 1.5
    except (TypeError, ValueError):
        written = None
    if not isinstance(written, str) or "1" not in written:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a %-format for one number, such as %.9g or %.6f"
        )
    return text


def _run_predict(args):
    from .._persist import load_model

    model = load_model(args.model, trusted=args.trust)
    X, names, by_name = _read_features(
        args.data,
        model.n_features_in_,
        getattr(model, "feature_names_in_", None),
        args.target_column,
        ignore=args.id_column,
    )
    ids = None if args.id_column is None else _csv_column(args.data, args.id_column)
    X = _with_names(X, names)
    with warnings.catch_warnings():
        if by_name:
            # Without pandas X is an array, but its columns were picked by the
            # model's own names above: scikit-learn's warning would be wrong.
            warnings.filterwarnings(
                "ignore", message="X does not have valid feature names",
                category=UserWarning,
            )
        predictions = model.predict(X)
    if args.out == "-":
        _write_predictions(sys.stdout, predictions, args.float_format, args.id_column, ids)
        sys.stdout.flush()
        return 0
    out = Path(args.out)
    check_writable(out)
    with open(out, "w", newline="") as file:
        _write_predictions(file, predictions, args.float_format, args.id_column, ids)
    print(f"{predictions.shape[0]} predictions written to {out}")
    return 0


def _write_predictions(file, predictions, float_format, id_name, ids):
    """The CSV of predictions: a header, then a row per prediction, after its
    id when there are ids."""
    if ids is not None and len(ids) != len(predictions):
        raise ValueError(
            f"the id column {id_name!r} has {len(ids)} fields for {len(predictions)} rows"
        )
    writer = csv.writer(file, lineterminator="\n")
    writer.writerow(["prediction"] if id_name is None else [id_name, "prediction"])
    values = (float_format % value for value in predictions)
    rows = ([v] for v in values) if ids is None else zip(ids, values)
    writer.writerows(rows)


def _csv_column(path, name):
    """The text of the column ``name`` of a ``.csv`` with a header, a field a
    row (blank lines skipped, as the numbers are read)."""
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        header = [field.strip() for field in next(reader)]
        index = header.index(name)
        return [row[index].strip() for row in reader if any(f.strip() for f in row)]


# The paper's reproductions: scripts in the repository's examples/, so that the
# gallery shows the same code the command runs.
REPRODUCTIONS = {
    "fig1": ("reproduce_fig1.py", "Figure 1a/1b: error vs step by batch size and bits"),
    "fig2": ("reproduce_fig2.py", "Figures 2a/2b: phase transitions over (n, d)"),
    "table2": (
        "reproduce_table2.py",
        "Table 2 / Figure 3: comm vs comp time under MPI (run under mpiexec)",
    ),
}


def _source_root():
    return Path(__file__).resolve().parents[2]


def _add_reproduce(subparsers):
    listing = "; ".join(f"{name}: {text}" for name, (_, text) in REPRODUCTIONS.items())
    parser = subparsers.add_parser(
        "reproduce",
        help=f"reproduce a figure or table of the paper ({', '.join(REPRODUCTIONS)})",
        description=f"Run one of the paper's reproductions ({listing}). They are "
        "scripts in the repository's examples/ and need a source checkout "
        "(pip install -e .). Arguments after the name go to the script: "
        "'reproduce fig1 --panels a', 'reproduce fig2 --full', 'reproduce fig1 "
        "--help'. table2 runs under mpiexec (mpiexec -n 2 python -m mpi4py -m "
        "sklearn_relu reproduce table2), or over an emulated network with "
        "examples/run_table2_netns.sh.",
    )
    parser.add_argument("figure", choices=sorted(REPRODUCTIONS))
    parser.add_argument("script_args", nargs=argparse.REMAINDER)
    parser.set_defaults(run=_run_reproduce)


def _run_reproduce(args):
    import runpy

    script = _source_root() / "examples" / REPRODUCTIONS[args.figure][0]
    if not script.is_file():
        raise OSError(
            f"{script} not found: the reproductions are scripts in the repository's "
            "examples/; run from a source checkout installed with pip install -e ."
        )
    # As `python examples/<script>` would: its directory first on the path, for
    # the helpers beside it (examples/_tracing.py).
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="sklearn_relu_reproduce")["main"](
            args.script_args
        )
    finally:
        sys.path.remove(str(script.parent))
    return 0


def _add_benchmark(subparsers):
    parser = subparsers.add_parser(
        "benchmark",
        help="run the benchmark suite (benchmarks/ in a source checkout)",
        description="Run the benchmark suite of the repository's benchmarks/ "
        "(needs pip install -e '.[bench]'); arguments go to it, e.g. "
        "'benchmark --only step' or 'benchmark --help'.",
    )
    parser.add_argument("bench_args", nargs=argparse.REMAINDER)
    parser.set_defaults(run=_run_benchmark)


def _run_benchmark(args):
    import subprocess

    root = _source_root()
    if not (root / "benchmarks" / "run.py").is_file():
        raise OSError(
            f"{root / 'benchmarks'} not found: the benchmarks live in the repository; "
            "run from a source checkout installed with pip install -e '.[bench]'"
        )
    command = [sys.executable, "-m", "benchmarks", *args.bench_args]
    return subprocess.call(command, cwd=root)


# Subcommand name -> function adding its parser.
COMMANDS = {
    "fit": _add_fit,
    "predict": _add_predict,
    "reproduce": _add_reproduce,
    "benchmark": _add_benchmark,
}


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


#: The estimator's advice in Python, and the same advice in this command's flags.
_CLI_ADVICE = (
    ("make_pipeline(StandardScaler(), ReLURegressor())", "--standardize"),
    ("raise max_iter", "raise --max-iter"),
    ("raise n_iter_no_change", "raise --n-iter-no-change"),
    ("learning_rate='auto'", "--learning-rate auto"),
    ("or give a learning_rate", "or give --learning-rate"),
    ("a smaller learning_rate", "a smaller --learning-rate"),
    ("init='zeros'", "--init zeros"),
    ("MPIBackend(topology='allreduce')", "--topology allreduce"),
    ("topology='allgather'", "--topology allgather"),
    ("solver='sgd'", "--solver sgd"),
    ("solver='intsgd'", "--solver intsgd"),
)


def in_cli_words(text):
    """``text`` (a warning's or an error's message) in this command's flags
    instead of the estimator's parameters, where it gives advice.

    >>> in_cli_words("use MPIBackend(topology='allreduce') (or 'auto')")
    "use --topology allreduce (or 'auto')"
    """
    for python, flag in _CLI_ADVICE:
        text = text.replace(python, flag)
    return text


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as a command-line user reads it: its message in terms of this
    command's flags, not the package's source line that raised it."""
    text = in_cli_words(str(message))
    print(f"warning ({category.__name__}): {text}", file=file or sys.stderr, flush=True)
