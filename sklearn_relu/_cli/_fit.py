"""``fit``: fit a ``ReLURegressor`` to a data file and save it.

The estimator's flags are generated from the table of its parameters
(:data:`sklearn_relu._params.PARAMETERS`): their names, defaults, choices and
help are the estimator's, and a parameter without a flag says why in the
epilog of ``fit --help``. The flags written here are the command line's own:
the data, the output, the held-out rows, where the workers run.
"""

import argparse
import math
import sys
import textwrap
import time

import numpy as np

from .._params import PARAMETERS, add_arguments, parameter_help
from ..backends._mpi import TOPOLOGIES
from . import _data
from ._launcher import under_mpi_launcher
from ._output import check_writable, save_atomically
from ._report import report, scores_over_ranks

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
  .parquet  a Parquet file (or .pq), a directory of them, or a quoted glob
        ('data/part-*.parquet'), read in name order as one table (pip install
        "sklearn-relu[parquet]"); y and the weights by column as for .csv, the
        column names kept as for a .csv header

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


def add_fit(subparsers):
    """Add the ``fit`` command's parser to ``subparsers``."""
    fit = subparsers.add_parser(
        "fit",
        help="fit a ReLURegressor to a data file and save it (skops or joblib)",
        description="Fit ReLURegressor (SGD, or any compressed SGD of --solver) to "
        "a data file and save it.",
        epilog=f"{DATA_HELP}\n{not_on_the_command_line()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_data_arguments(fit)
    add_arguments(
        fit.add_argument_group("estimator (see ReLURegressor)"), overrides=_overrides()
    )
    _add_backend_arguments(fit.add_argument_group("where the workers run"))
    fit.add_argument("--json", action="store_true", help="print the summary as JSON")
    fit.set_defaults(run=run_fit)


def not_on_the_command_line():
    """The epilog's paragraph on the estimator's parameters that have no
    flag, each with the reason the table gives."""
    lines = ["not on the command line (ReLURegressor parameters without a flag):"]
    for parameter in PARAMETERS:
        if parameter.flag is None:
            lines += textwrap.wrap(
                f"{parameter.name}: {parameter.cli}", width=78,
                initial_indent="  ", subsequent_indent="    ",
            )
    return "\n".join(lines) + "\n"


def _parameter(name):
    return next(parameter for parameter in PARAMETERS if parameter.name == name)


def _overrides():
    """What the command line changes in the generated flags, and why."""
    init = _parameter("init")
    return {
        # On a terminal a fit shows its progress unless told otherwise: one
        # line kept up to date, on stderr (the summary goes to stdout).
        "verbose": {
            "default": int(sys.stderr.isatty()),
            "help": f"{parameter_help('verbose')} (default: 0), 1 when stderr is a "
                    "terminal: one progress line kept up to date",
        },
        # An array of starting coefficients cannot be typed as a flag's value:
        # the flag takes the table's named starts, as choices, as they read.
        "init": {"type": str, "choices": [
            choice for accepts in init.accepts.constraints
            for choice in accepts.choices() or ()
        ]},
    }


def _add_data_arguments(fit):
    """The data file, what it holds, and where the model goes."""
    fit.add_argument("data", help="training data: .npz, .npy, .csv or Parquet (see below)")
    fit.add_argument("--target", help="y as a .npy file, when DATA is a .npy with X")
    fit.add_argument(
        "--target-column",
        metavar="NAME|INDEX",
        help="the .csv or Parquet column holding y: its name or its index "
        "(negative from the end; default: the last)",
    )
    fit.add_argument(
        "--sample-weight-column",
        metavar="NAME|INDEX",
        help="the .csv or Parquet column holding each row's sample weight (not a feature)",
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


def _add_backend_arguments(where):
    """``--backend`` and the MPI backend's options. ``--backend`` is the
    command line's own: the estimator's ``backend`` takes a name or an
    object, and the command line adds ``auto`` (mpi under mpiexec)."""
    where.add_argument(
        "--backend",
        choices=["auto", "inprocess", "joblib", "mpi"],
        default="auto",
        help="auto: mpi when started by mpiexec, else inprocess",
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
        "of a memory-mapped .npy file, or its own Parquet files (row groups when "
        "there are fewer files than ranks)",
    )


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


#: Seconds a failing rank waits, its error written, before it ends the job.
ABORT_GRACE_SECONDS = 1.0


def run_fit(args):
    """Run ``fit`` with the parsed ``args``; returns the exit status."""
    started = time.perf_counter()
    backend, writer, mpi = _make_backend(args)
    try:
        _fit_and_save(args, backend, writer, mpi, started)
    except Exception as exc:
        if mpi is not None and mpi.size > 1:
            # One failing rank must not leave the others waiting in a
            # collective forever: end the whole job.
            print(f"error on MPI rank {mpi.rank}: {exc}", file=sys.stderr, flush=True)
            # mpiexec forwards a rank's stderr through its proxy, which the
            # abort kills: under load the line was lost (an empty stderr and
            # status 1). A moment first lets it through.
            time.sleep(ABORT_GRACE_SECONDS)
            mpi.abort(1)
        raise
    return 0


def _fit_and_save(args, backend, writer, mpi, started):
    """Read the data, fit, and, if this process is the ``writer``, save the
    model and print the summary."""
    from .._estimator import ReLURegressor

    if writer:
        check_writable(args.out)
    shard = None
    if mpi is not None and args.data_mode == "local":
        shard = (mpi.rank, mpi.size)
    X, y, sample_weight, names = _data.read_data(
        args.data, args.target, args.target_column, shard,
        csv_header=args.csv_header,
        sample_weight_column=args.sample_weight_column,
    )
    train, test = _hold_out(
        (_data.with_names(X, names), y, sample_weight), args.test_size, args.random_state,
        per_rank=shard is not None,
    )
    est = ReLURegressor(
        backend=backend,
        **{parameter.name: getattr(args, parameter.name)
           for parameter in PARAMETERS if parameter.flag is not None},
    )
    # Under --data local each rank holds only its rows: the scaler's
    # statistics and the reported scores are summed over all ranks.
    ranks = mpi if shard is not None else None
    model = _fit_model(est, train, args.standardize, ranks)
    scores = scores_over_ranks(model, train, test, ranks)
    _data.keep_names(model, names)
    if writer:
        # The backend object (a communicator, a socket) is not part of the
        # model: keep its name, which any process can use again.
        est.set_params(backend=_backend_name(args))
        save_atomically(model, args.out)
        report(model, scores, args, started)


def _make_backend(args):
    """The backend for ``--backend``; whether this process writes output; and
    the MPI backend, or None."""
    name = _backend_name(args)
    if name == "mpi":
        from ..backends import MPIBackend

        backend = MPIBackend(topology=args.topology, data=args.data_mode)
        if backend.size == 1 and not under_mpi_launcher():
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


def _backend_name(args):
    if args.backend == "auto":
        return "mpi" if under_mpi_launcher() else "inprocess"
    return args.backend


def _hold_out(data, test_size, random_state, per_rank):
    """``(train, test)``: ``data`` (X, y, sample_weight) split as ``--test-size``
    says, each ``(X, y, sample_weight)``; ``test`` is None without one."""
    from sklearn.model_selection import train_test_split

    if test_size is None:
        return data, None
    X, _, sample_weight = data
    _check_test_size(test_size, X.shape[0], per_rank)
    arrays = [array for array in data if array is not None]
    # Every MPI rank draws the same split from --random-state.
    split = train_test_split(*arrays, test_size=test_size, random_state=random_state or 0)
    train, test = split[0::2], split[1::2]
    if sample_weight is None:
        return (*train, None), (*test, None)
    return tuple(train), tuple(test)


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


def _fit_model(est, train, standardize, ranks):
    """``est`` fitted to ``train``, behind a ``StandardScaler`` with
    ``--standardize`` (fitted to every rank's rows when ``ranks`` is given)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, sample_weight = train
    if standardize and ranks is not None:
        scaler = _standard_scaler_over_ranks(X, ranks)
        est.fit(scaler.transform(X), y, sample_weight)
        return Pipeline([("scale", scaler), ("relu", est)])
    if standardize:
        model = Pipeline([("scale", StandardScaler()), ("relu", est)])
        return model.fit(X, y, relu__sample_weight=sample_weight)
    return est.fit(X, y, sample_weight)


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

