"""``python -m sklearn_relu``: fit a ReLU from data files, on one machine or under MPI.

Subcommands live in :data:`COMMANDS` (name -> function adding its parser);
each parser sets ``run``, the function that executes it and returns the exit
status.
"""

import argparse
import glob
import itertools
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np

from ._estimator import SOLVERS
from ._worker import shard_bounds
from .backends._mpi import TOPOLOGIES

__all__ = ["main", "build_parser", "load_data", "save_atomically"]

DATA_HELP = """\
data formats:
  .npz  arrays named X and y (and optionally sample_weight)
  .npy  X alone (memory-mapped); give y with --target y.npy
  .csv  comma-separated numbers, one row per sample, y in the last column;
        a first line of names is skipped. A first line that could be either
        (pandas' default names 0,1,2,..., or a missing value such as NA) is
        an error: say which with --csv-header yes|no

under MPI (every rank reads the same file and trains on its own shard):
  mpiexec -n 4 python -m mpi4py -m sklearn_relu fit data.npz --solver qsgd \\
      --bits 8 --out model.joblib
  Only rank 0 writes the model. --backend auto picks mpi under mpiexec.

The model is written with joblib to a temporary file next to --out and moved
into place when complete, so a fit that fails or is killed leaves an earlier
model at --out untouched. Load it with joblib.load(path).
"""

# Environment variables that MPI launchers set in the processes they start.
_MPI_LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


def load_data(path, target=None, shard=None, csv_header="auto"):
    """``(X, y, sample_weight)`` from a ``.npz``, ``.npy`` or ``.csv`` file.

    Parameters
    ----------
    path : str or Path
    target : str or Path, optional
        A ``.npy`` file with ``y``; required when ``path`` is a ``.npy``.
    shard : tuple (index, count), optional
        Only the rows of shard ``index`` of ``count`` equal contiguous shards
        (as ``MPIBackend(data="local")`` takes them). Only for ``.npy`` data,
        which is memory-mapped, so that only those rows are ever read.
    csv_header : {"auto", "yes", "no"}, default="auto"
        Whether a CSV's first line is column names. ``"auto"`` skips a line
        of names, reads a line of numbers, and raises when it cannot tell:
        no row is ever dropped or read silently by a guess.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    sample_weight : ndarray of shape (n_samples,) or None
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    sample_weight = None
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
    elif suffix == ".csv":
        table = _load_csv(path, csv_header)
        X, y = table[:, :-1], table[:, -1]
    else:
        raise ValueError(
            f"unsupported data file {path.name!r}: use .npz (X, y), .npy (with "
            "--target) or .csv (y in the last column)"
        )
    if shard is not None and suffix != ".npy":
        raise ValueError(
            "--data local reads each rank's rows from a memory-mapped .npy file: "
            f"save X and y as .npy files (got {path.name!r})"
        )
    if target is not None and suffix != ".npy":
        raise ValueError("--target is only for .npy data files")
    return X, y, sample_weight


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


def _load_csv(path, csv_header="auto"):
    if csv_header not in ("auto", "yes", "no"):
        raise ValueError(
            f"csv_header must be 'auto', 'yes' or 'no', got {csv_header!r}"
        )
    # utf-8-sig: a byte-order mark (Excel writes one) is not part of the data.
    with open(path, encoding="utf-8-sig") as file:
        first = file.readline()
    if not first.strip():
        raise ValueError(f"{path} is empty: it has no data rows")
    if csv_header == "auto":
        skip = int(_csv_has_header(path, first))
    else:
        skip = int(csv_header == "yes")
    if not _has_rows(path, skip):
        raise ValueError(f"{path} has column names but no data rows")
    table = np.loadtxt(
        path, delimiter=",", skiprows=skip, ndmin=2, encoding="utf-8-sig"
    )
    if table.shape[1] < 2:
        raise ValueError(f"{path} needs at least two columns: features, then y")
    return table


def _has_rows(path, skip):
    with open(path, encoding="utf-8-sig") as file:
        return any(line.strip() for line in itertools.islice(file, skip, None))


def save_atomically(obj, path):
    """``joblib.dump(obj, path)`` through a temporary file and ``os.replace``.

    Readers never see a partly written file, and an earlier file at ``path``
    stays as it was unless the new one was written completely.
    """
    import joblib

    path = Path(path)
    check_writable(path)
    _remove_stale_temporaries(path)
    fd, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp"
    )
    os.close(fd)
    try:
        # mkstemp makes the file private; give it the permissions of a file
        # created the usual way.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        joblib.dump(obj, temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


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


# Temporary files are named after the writing host and process, so that one
# left by a writer killed mid-save (kill -9) is recognised and removed.
def _temporary_prefix(path):
    return f".{path.name}.{socket.gethostname()}.{os.getpid()}."


def _remove_stale_temporaries(path):
    mine = f".{path.name}.{socket.gethostname()}."
    for leftover in path.parent.glob(f"{glob.escape(mine)}*.tmp"):
        pid = leftover.name[len(mine) :].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:  # its writer is gone: nothing will finish it
            leftover.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, another user's


def _under_mpi_launcher():
    return any(name in os.environ for name in _MPI_LAUNCHER_VARIABLES)


def _make_backend(args):
    """The backend for ``--backend``; and whether this process writes output."""
    name = args.backend
    if name == "auto":
        name = "mpi" if _under_mpi_launcher() else "inprocess"
    if name == "mpi":
        from .backends import MPIBackend

        backend = MPIBackend(topology=args.topology, data=args.data_mode)
        return backend, backend.rank == 0, backend
    if name == "joblib":
        from .backends import JoblibBackend

        return JoblibBackend(), True, None
    return name, True, None


def _positive_int_or_auto(text):
    return text if text == "auto" else int(text)


def _learning_rate(text):
    return text if text == "auto" else float(text)


def _optional_int(text):
    return None if text.lower() == "none" else int(text)


def _optional_float(text):
    return None if text.lower() == "none" else float(text)


def _add_fit(subparsers):
    fit = subparsers.add_parser(
        "fit",
        help="fit a ReLURegressor to a data file and save it with joblib",
        description="Fit ReLURegressor (SGD or QSGD) to a data file and save it.",
        epilog=DATA_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("data", help="training data: .npz, .npy or .csv (see below)")
    fit.add_argument("--target", help="y as a .npy file, when DATA is a .npy with X")
    fit.add_argument("--out", required=True, help="where to write the fitted model")
    fit.add_argument(
        "--csv-header", choices=["auto", "yes", "no"], default="auto",
        help="whether a .csv's first line is column names (default: tell, or "
        "raise when unsure)",
    )
    model = fit.add_argument_group("estimator (see ReLURegressor)")
    model.add_argument("--solver", choices=sorted(SOLVERS), default="sgd")
    model.add_argument(
        "--bits", type=int, default=8,
        help="qsgd: bits a coordinate, 2..16; intsgd: 8, 16 or 32 (default 8)",
    )
    model.add_argument("--bucket-size", type=_optional_int, default=None)
    model.add_argument("--batch-size", type=_positive_int_or_auto, default="auto")
    model.add_argument("--learning-rate", type=_learning_rate, default="auto")
    model.add_argument("--max-iter", type=int, default=200, help="epochs (default 200)")
    model.add_argument(
        "--tol", type=_optional_float, default=1e-4, help="'none': run all epochs"
    )
    model.add_argument("--n-iter-no-change", type=int, default=5)
    model.add_argument(
        "--init", choices=["spectral", "zeros", "random"], default="spectral"
    )
    model.add_argument("--n-ensemble", type=int, default=1)
    model.add_argument("--no-intercept", action="store_true", help="fit b = 0")
    model.add_argument("--early-stopping", action="store_true")
    model.add_argument("--validation-fraction", type=float, default=0.1)
    model.add_argument("--random-state", type=_optional_int, default=None)
    model.add_argument("--verbose", type=int, default=0)
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
    from ._estimator import ReLURegressor

    backend, writer, mpi = _make_backend(args)
    try:
        if writer:
            check_writable(args.out)
        shard = None
        if mpi is not None and args.data_mode == "local":
            shard = (mpi.rank, mpi.size)
        X, y, sample_weight = load_data(
            args.data, args.target, shard, csv_header=args.csv_header
        )
        est = ReLURegressor(
            solver=args.solver,
            bits=args.bits,
            bucket_size=args.bucket_size,
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
        )
        est.fit(X, y, sample_weight)
        if writer:
            save_atomically(est, args.out)
            _report(est, X, y, args)
    except Exception as exc:
        if mpi is not None and mpi.size > 1:
            # One failing rank must not leave the others waiting in a
            # collective forever: end the whole job.
            print(f"error on MPI rank {mpi.rank}: {exc}", file=sys.stderr, flush=True)
            mpi.abort(1)
        raise
    return 0


def _report(est, X, y, args):
    record = est.comm_record_
    summary = {
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "n_workers": est.n_workers_,
        "steps": est.t_,
        "epochs": est.n_iter_,
        "final_loss": est.loss_curve_[-1],
        "r2": est.score(X, y),
        **record.as_dict(),
        "out": str(args.out),
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"fitted {args.solver} on {summary['n_samples']} x {summary['n_features']} "
        f"with {est.n_workers_} worker(s): {est.t_} steps ({est.n_iter_} epochs), "
        f"loss {summary['final_loss']:.4g}, R^2 {summary['r2']:.4f}\n"
        f"workers sent {record.n_messages} messages, {record.bytes_sent} bytes "
        f"({record.compression_ratio:.2f}x fewer than float64); compute "
        f"{record.compute_seconds:.3f} s, communication "
        f"{record.communicate_seconds:.3f} s\nmodel written to {args.out}"
    )


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
    return Path(__file__).resolve().parents[1]


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
    runpy.run_path(str(script), run_name="sklearn_relu_reproduce")["main"](
        args.script_args
    )
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
COMMANDS = {"fit": _add_fit, "reproduce": _add_reproduce, "benchmark": _add_benchmark}


def build_parser():
    """The argument parser of ``python -m sklearn_relu``."""
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_relu",
        description="Fit ReLU models by SGD and quantized SGD (QSGD), on one "
        "machine, on joblib workers, or across MPI ranks.",
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True)
    for add in COMMANDS.values():
        add(subparsers)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status.

    >>> main(["fit", "missing.npz", "--out", "model.joblib", "--backend", "inprocess"])
    Traceback (most recent call last):
    ...
    ValueError: data file 'missing.npz' does not exist
    """
    args = build_parser().parse_args(argv)
    return args.run(args)
