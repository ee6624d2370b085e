"""``reproduce`` and ``benchmark``: run the scripts of a source checkout (the
paper's reproductions in ``examples/``, the suite in ``benchmarks/``)."""

import argparse
import sys
from pathlib import Path

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
    """The source checkout this package runs from (the repository's root)."""
    return Path(__file__).resolve().parents[2]


def add_reproduce(subparsers):
    """Add the ``reproduce`` command's parser to ``subparsers``."""
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
    """Run the reproduction ``args.figure`` with the arguments after it."""
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


def add_benchmark(subparsers):
    """Add the ``benchmark`` command's parser to ``subparsers``."""
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
    """Run the benchmark suite; its exit status is the command's."""
    import subprocess

    root = _source_root()
    if not (root / "benchmarks" / "run.py").is_file():
        raise OSError(
            f"{root / 'benchmarks'} not found: the benchmarks live in the repository; "
            "run from a source checkout installed with pip install -e '.[bench]'"
        )
    command = [sys.executable, "-m", "benchmarks", *args.bench_args]
    return subprocess.call(command, cwd=root)

