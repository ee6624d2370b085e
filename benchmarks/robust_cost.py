"""What a robust aggregation costs against one gradient step.

    python -m benchmarks.robust_cost [--out docs/figures/robust_cost.csv]

Times, side by side and interleaved round by round (``_timing.compare``), on
one thread (``--threads``): one mini-batch gradient step of the package
(``batch_gradient`` on m = 1000 rows of n = 20000, d = 4000, float64: what a
worker computes when one worker draws the whole batch), and each aggregation
rule combining the 10 messages of a
step at d = 4000 (plus the intercept). The messages are real: the 10 workers'
gradient shares (100 rows each) near the optimum of the planted model, the
first 4 replaced by N(0, 100^2) noise, so that the robust rules work as they
would under attack. Prints each rule's time as a share of the gradient step and
PASS or FAIL for the targets: the geometric median at most 0.5 of the step,
BGMD at most 0.2.
"""

import argparse
import csv
import sys

import numpy as np
from threadpoolctl import threadpool_limits

from sklearn_relu import make_relu_regression
from sklearn_relu._gradient import batch_gradient
from sklearn_relu.aggregation import get_aggregator
from sklearn_relu.compression import Identity

from ._timing import compare

TARGETS = {"geometric_median": 0.5, "bgmd": 0.2}
RULES = ["mean", "geometric_median", "bgmd", "median", "trimmed_mean", "krum",
         "centered_clip"]


def messages(X, y, w, n_workers, batch_size, n_byzantine, rng):
    """The workers' gradient shares at a point near ``w``; the first
    ``n_byzantine`` are noise."""
    params = np.append(w + 1e-3 * rng.standard_normal(w.shape[0]), 0.0)
    shares = []
    for index in range(n_workers):
        rows = rng.integers(0, X.shape[0], batch_size // n_workers)
        gradient = batch_gradient(X, y, None, params, rows, 1.0 / batch_size)[0]
        if index < n_byzantine:
            gradient = rng.normal(0.0, 100.0, size=gradient.shape)
        shares.append(gradient)
    return params, shares


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--d", type=int, default=4000)
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--byzantine", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the table (CSV) here")
    args = parser.parse_args(argv)

    X, y, w = make_relu_regression(
        n_samples=args.n, n_features=args.d, coef=True, random_state=0
    )
    rng = np.random.default_rng(0)
    params, shares = messages(X, y, w, args.workers, args.m, args.byzantine, rng)
    compressor = Identity()
    aggregators = {rule: get_aggregator(rule) for rule in RULES}

    def gradient_step():
        rows = rng.integers(0, X.shape[0], args.m)
        batch_gradient(X, y, None, params, rows, 1.0 / args.m, n_threads=args.threads)

    contenders = {"gradient step": gradient_step}
    for rule, aggregator in aggregators.items():
        contenders[rule] = (
            lambda aggregator=aggregator: aggregator.aggregate(shares, compressor)
        )
    # One core for both (BLAS included): an MPI rank that aggregates computes
    # its own gradient on the same core, and on a shared machine a two-thread
    # step is slowed by the other jobs far more than a one-thread one.
    with threadpool_limits(args.threads):
        seconds = compare(contenders, rounds=args.rounds, settle_seconds=0.1)

    step = seconds["gradient step"]
    lines = [
        f"| rule | ms ({args.workers} messages, d = {args.d}) | share of a gradient step "
        f"(m = {args.m}: {1e3 * step:.2f} ms) | target |",
        "|---|---|---|---|",
    ]
    verdicts = []
    for rule in RULES:
        ratio = seconds[rule] / step
        target = TARGETS.get(rule)
        lines.append(
            f"| {rule} | {1e3 * seconds[rule]:.3f} | {ratio:.2f} | "
            + (f"<= {target}" if target else "") + " |"
        )
        if target:
            verdicts.append(
                f"{'PASS' if ratio <= target else 'FAIL'}: {rule} aggregation is "
                f"{ratio:.2f} of a gradient step (target <= {target})"
            )
    table = "\n".join(lines)
    print(table)
    print("\n".join(verdicts))
    if args.out:
        # The docs show it as a csv-table.
        with open(args.out, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["rule", "ms", "share of a gradient step", "target"])
            writer.writerow(["gradient step", f"{1e3 * step:.3f}", "1", ""])
            for rule in RULES:
                target = TARGETS.get(rule)
                writer.writerow([rule, f"{1e3 * seconds[rule]:.3f}",
                                 f"{seconds[rule] / step:.2f}",
                                 f"<= {target}" if target else ""])
    return 0 if all(v.startswith("PASS") for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
