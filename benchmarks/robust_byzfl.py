"""The package's robust aggregators against ByzFL's, rule by rule, on one thread.

    python -m benchmarks.robust_byzfl [--dims 4000 100000] [--out results.csv]
    python -m benchmarks --only byzfl          # the same rows in results.md

ByzFL (``pip install -e ".[bench]"``) is an independent library of Byzantine-
robust aggregators written with NumPy and PyTorch. For each rule both have, the
two are timed side by side and interleaved round by round (``_timing.compare``),
on one thread (threadpoolctl for BLAS, ``torch.set_num_threads(1)``), on the
same inputs: the same Python list of W = 16 float64 vectors of dimension d
(4000 and 100000), of which f = 4 are Byzantine. The honest vectors are a
common direction plus N(0, 1) noise a coordinate, the Byzantine ones N(0, 100^2)
noise, as an attack far from the honest spread. The package's rule is called as
a fit calls it (``aggregate(vectors, Identity())``: the vectors stacked, the
centre, times W), ByzFL's through its NumPy path (``rule(vectors)``: the
vectors stacked, the centre). Its PyTorch path converts to float32 and is not
timed here. Target: each rule at most 1.5x ByzFL's time for the same rule.

Where the two rules differ, the row says so, and a like-with-like row is
added where one can be made:

- Krum: the package sums the squared distances to the ``n - f - 2`` nearest
  others (the paper's count), ByzFL averages ``n - f - 1``; the same work.
- Geometric median: the package runs smoothed, over-relaxed Weiszfeld
  iterations to a tolerance from the medoid; ByzFL runs ``T = 3`` plain ones
  from zero. The like-with-like row gives ByzFL the fewest ``T`` that reach
  the package's sum of distances (to 1e-12, relative).
- Centered clipping: both take one clipping iteration (the paper's default),
  the package from the medoid with a radius from the vectors' spread, ByzFL
  from its previous aggregate (zero at first) with ``tau = 100``. The package's
  medoid costs one Gram matrix of the vectors more; no row removes it.
- NNM and bucketing (pre-aggregators): the transform alone, on the stacked
  vectors; bucketing's shuffles come from different generators.

Not in ByzFL: ``bgmd`` (block geometric median) and ``majority`` (a vote on
signs). Not in the package: ByzFL's MDA, MoNNA, Meamed, CAF, SMEA, and its
static and adaptive clipping pre-aggregators.
"""

import argparse
import csv
import importlib
import importlib.util
import sys
import types

import numpy as np
from threadpoolctl import threadpool_limits

from sklearn_relu.aggregation import (
    NNM,
    Bucketing,
    CenteredClip,
    CoordinateMedian,
    GeometricMedian,
    Krum,
    Mean,
    MultiKrum,
    TrimmedMean,
)
from sklearn_relu.compression import Identity

from ._timing import compare

TARGET = 1.5


def byzfl_aggregators():
    """ByzFL's ``byzfl.aggregators`` module, or None when ByzFL is not installed.

    ``import byzfl`` runs its package ``__init__``, which also imports its
    training benchmark and so torchvision, which does not load beside the CPU
    build of torch that the bench extra pins ("operator torchvision::nms does
    not exist"). The aggregators need only NumPy, SciPy and torch: the package
    is entered without running its ``__init__``.
    """
    if "byzfl" not in sys.modules:
        spec = importlib.util.find_spec("byzfl")
        if spec is None:
            return None
        package = types.ModuleType("byzfl")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["byzfl"] = package
    return importlib.import_module("byzfl.aggregators")


def messages(d, n_workers, n_byzantine, rng):
    """``n_workers`` float64 vectors of dimension ``d``: the first
    ``n_byzantine`` N(0, 100^2) noise, the others a common direction plus
    N(0, 1) noise."""
    direction = rng.standard_normal(d)
    return [
        rng.normal(0.0, 100.0, d) if index < n_byzantine
        else direction + rng.standard_normal(d)
        for index in range(n_workers)
    ]


def sum_of_distances(points, z):
    return float(np.linalg.norm(points - z, axis=1).sum())


def fewest_iterations(byzfl, vectors, objective, most=50):
    """The fewest ByzFL geometric-median iterations ``T`` that reach
    ``objective`` (to 1e-12, relative), or ``most``."""
    points = np.array(vectors)
    for iterations in range(1, most + 1):
        z = byzfl.GeometricMedian(T=iterations)(vectors)
        if sum_of_distances(points, z) <= objective * (1 + 1e-12):
            return iterations
    return most


def pairs(byzfl, vectors, n_byzantine):
    """``(rule, the package's callable, ByzFL's callable, note)`` per row."""
    f = n_byzantine
    identity = Identity()
    points = np.array(vectors)
    geometric = GeometricMedian()
    objective = sum_of_distances(points, geometric.center(points))
    iterations = fewest_iterations(byzfl, vectors, objective)

    def aggregate(rule):
        return lambda: rule.aggregate(vectors, identity)

    median = aggregate(geometric)

    def transform(pre):
        return lambda: pre.transform(np.array(vectors, dtype=np.float64), 0)

    return [
        ("mean", aggregate(Mean()), byzfl.Average(), ""),
        ("median", aggregate(CoordinateMedian()), byzfl.Median(), ""),
        ("trimmed_mean", aggregate(TrimmedMean(n_trimmed=f)), byzfl.TrMean(f=f), ""),
        ("krum", aggregate(Krum(n_byzantine=f)), byzfl.Krum(f=f),
         "n - f - 2 neighbours against ByzFL's n - f - 1"),
        ("multi_krum", aggregate(MultiKrum(n_byzantine=f)), byzfl.MultiKrum(f=f),
         "n - f averaged, as ByzFL"),
        ("geometric_median", median, byzfl.GeometricMedian(),
         "to a tolerance, against ByzFL's T = 3 iterations"),
        ("geometric_median, like with like", median,
         byzfl.GeometricMedian(T=iterations),
         f"ByzFL with T = {iterations}, the fewest that reach the package's objective"),
        ("centered_clip", aggregate(CenteredClip()), byzfl.CenteredClipping(),
         "one iteration each; the package's from the medoid (one Gram matrix more)"),
        ("nnm", transform(NNM(n_byzantine=f)), byzfl.NNM(f=f), "the transform alone"),
        ("bucketing", transform(Bucketing(s=2)), byzfl.Bucketing(s=2),
         "the transform alone, s = 2"),
    ]


def measure(dims=(4000, 100000), n_workers=16, n_byzantine=4, rounds=15, progress=False):
    """Rows ``(rule, d, package ms, ByzFL ms, ratio, passed, note)``, or None
    when ByzFL is not installed."""
    byzfl = byzfl_aggregators()
    if byzfl is None:
        return None
    import torch

    torch.set_num_threads(1)
    rows = []
    for d in dims:
        vectors = messages(d, n_workers, n_byzantine, np.random.default_rng(0))
        table = pairs(byzfl, vectors, n_byzantine)
        # A callable in two rows (the geometric median's) is timed once, under
        # the first row's name.
        contenders, first_row = {}, {}
        for rule, ours, theirs, _ in table:
            contenders.setdefault(("package", first_row.setdefault(ours, rule)), ours)
            contenders[("byzfl", rule)] = lambda theirs=theirs: theirs(vectors)
        with threadpool_limits(1):
            seconds = compare(contenders, rounds=rounds, settle_seconds=0.05)
        for rule, package, _, note in table:
            ours = seconds[("package", first_row[package])]
            theirs = seconds[("byzfl", rule)]
            ratio = ours / theirs
            rows.append((rule, d, 1e3 * ours, 1e3 * theirs, ratio, ratio <= TARGET, note))
            if progress:
                print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row):
    rule, d, ours, theirs, ratio, passed, note = row
    return (f"| {rule} | {d} | {ours:.3f} | {theirs:.3f} | {ratio:.2f} | "
            f"{'PASS' if passed else 'FAIL'} | {note} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[4000, 100000])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--byzantine", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", help="also write the table (CSV) here")
    args = parser.parse_args(argv)
    print(f"W = {args.workers} vectors, f = {args.byzantine}, one thread; "
          f"target: the package at most {TARGET}x ByzFL's time")
    print("| rule | d | package ms | ByzFL ms | ratio | verdict | note |")
    print("|---|---|---|---|---|---|---|")
    rows = measure(args.dims, args.workers, args.byzantine, args.rounds, progress=True)
    if rows is None:
        print('ByzFL is not installed: pip install -e ".[bench]"')
        return 1
    if args.out:
        with open(args.out, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["rule", "d", "package ms", "ByzFL ms", "ratio", "verdict",
                             "note"])
            for rule, d, ours, theirs, ratio, passed, note in rows:
                writer.writerow([rule, d, f"{ours:.3f}", f"{theirs:.3f}", f"{ratio:.2f}",
                                 "PASS" if passed else "FAIL", note])
    return 0 if all(row[5] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
