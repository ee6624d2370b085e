"""How many steps a compressed fit takes at the automatic step, against the
steps at half its largest stable step and at SGD's step.

``learning_rate="auto"`` takes ``min(mu_0 / 2, (2/3) mu_delta)``, where
``mu_delta = 2 / ((1 + delta / W) lambda + (1 + delta) R / m)`` is the largest
stable step for the compressor's variance factor ``delta`` (docs/theory.rst,
"The step under compression"). This study fits the planted model (n = 20000,
d = 4000, batch 1000, no noise, seed 0, in-process workers: the arithmetic of
the MPI runs, bit for bit) to relative error 1e-6 at that step, at
``mu_delta / 2`` (the margin SGD keeps; the plan before 2026-11-29) and at
SGD's step, and counts the steps::

    python -m benchmarks.auto_step          # a few minutes; writes results/auto_step.md

(Runs that measure the curvature draw from the random stream that later
samples the batches: a step given as a number and the same step chosen by
"auto" can differ by a few steps.)
"""

import argparse
import math
from pathlib import Path

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._step_size import auto_learning_rate, largest_stable_step
from sklearn_relu.compression import SOLVER_PARAMETERS, get_compressor

from .run import _reached

RESULTS = Path(__file__).resolve().parent / "results" / "auto_step.md"

MARGIN_FACTORS = (1.0, 1.3, 1.6, 2.0, 2.5)

CASES = [  # label, estimator parameters, workers
    ("SGD", dict(solver="sgd"), 16),
    ("IntSGD 8-bit", dict(solver="intsgd", bits=8), 16),
    ("QSGD 8-bit", dict(solver="qsgd", bits=8), 16),
    ("QSGD 4-bit", dict(solver="qsgd", bits=4), 16),
    ("TernGrad", dict(solver="terngrad"), 16),
    ("IntSGD 8-bit, s = 1", dict(solver="intsgd", bits=8), 64),
]


def steps_to(X, y, w_star, target, max_steps, **params):
    """Steps to ``target`` (None if not within ``max_steps``) and the
    estimator, or ``("diverged", None)``."""
    epochs = math.ceil(max_steps * params["batch_size"] / X.shape[0])
    try:
        est = ReLURegressor(max_iter=epochs, tol=None, fit_intercept=False, random_state=0,
                            callback=_reached(w_star, target), **params).fit(X, y)
    except FloatingPointError:
        return "diverged", None
    return (est.t_ if est.stopped_by_callback_ else None), est


def _steps(steps, max_steps):
    return str(steps) if steps is not None else f"> {max_steps}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-features", type=int, default=4000)
    parser.add_argument("--n-samples", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--max-steps", type=int, default=6000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    X, y, w_star = make_relu_regression(args.n_samples, args.n_features, coef=True,
                                        random_state=0)
    m, d = args.batch_size, args.n_features
    rows = []
    for label, params, workers in CASES:
        params = dict(params, batch_size=m, n_workers=workers)
        planned, est = steps_to(X, y, w_star, 1e-6, args.max_steps, **params)
        curvature = est._curvature  # the same for every case: same data and start
        given = est.get_params(deep=False)
        compressor = get_compressor(
            params["solver"], **{k: given[k] for k in SOLVER_PARAMETERS}
        )
        delta = compressor.variance_factor(d, workers)
        row = [label, str(workers), f"{delta:.3g}", f"{est.learning_rate_:.4f}",
               _steps(planned, args.max_steps)]
        half_limit = largest_stable_step(curvature, m, delta, workers) / 2
        for step in (half_limit, auto_learning_rate(curvature, m)):
            steps, _ = steps_to(X, y, w_star, 1e-6, args.max_steps,
                                **dict(params, learning_rate=step))
            row.append(f"{_steps(steps, args.max_steps)} (step {step:.4f})")
        rows.append(row)
        print(" | ".join(row), flush=True)
    # SGD's own margin: its steps at multiples of its step, the evidence that
    # half the stable step leaves room a compressor's noise may use.
    sgd_step = auto_learning_rate(curvature, m)
    margin = []
    for factor in MARGIN_FACTORS:
        steps, _ = steps_to(X, y, w_star, 1e-6, args.max_steps, solver="sgd",
                            batch_size=m, n_workers=16, learning_rate=factor * sgd_step)
        margin.append(f"{_steps(steps, args.max_steps)}")
        print(f"SGD at {factor} x its step: {margin[-1]}", flush=True)
    header = ["compressor", "workers", "delta", "auto step", "steps to 1e-6",
              "at half the stable step", "at SGD's step"]
    lines = [
        "# Steps to relative error 1e-6 at the automatic step, at half the stable step "
        "and at SGD's step",
        "",
        f"Planted model, n = {args.n_samples}, d = {d}, batch {m}, seed 0, in-process "
        f"workers; at most {args.max_steps} steps. Command: `python -m benchmarks.auto_step`.",
        "A step given as a number is the same step as \"auto\"'s but not the same fit: "
        "measuring the curvature draws from the random stream that then samples the "
        "batches, so the two trajectories differ in their last bits and a few steps.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "SGD (16 workers) at multiples of its own step, steps to 1e-6:",
        "",
        "| " + " | ".join(f"{f} x" for f in MARGIN_FACTORS) + " |",
        "|" + "---|" * len(MARGIN_FACTORS),
        "| " + " | ".join(margin) + " |",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
