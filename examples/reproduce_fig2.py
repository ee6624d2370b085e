"""
Figure 2: phase transitions in (n, d) for SGD and QSGD
======================================================

Reproduces Figures 2a (SGD) and 2b (8-bit QSGD) of Kalan, Soltanolkotabi and
Avestimehr (2019): for each cell of a grid of sample sizes ``n`` and dimensions
``d``, the empirical probability, over independent planted problems, that the
fit reaches relative error ``||w - w*|| / ||w*|| <= 1e-4`` within a budget of
1000 SGD steps (``learning_rate="auto"``, default batch, spectral start, no
intercept, no noise).

The paper's claim: there is a sharp transition from failure to success, and the
number of samples it needs grows linearly in ``d`` -- the same for QSGD as for
SGD. The dashed line is ``n = c d`` with ``c`` fitted by least squares to the
smallest ``n`` at which at least half of the trials succeed, for each ``d``.

Run it from the repository root::

    python examples/reproduce_fig2.py          # small grid, a few minutes on 2 cores
    python examples/reproduce_fig2.py --full   # d up to 100, n up to 400, 20 trials
    python examples/reproduce_fig2.py --n-jobs 2

It writes ``fig2.png``, every cell in ``fig2.csv`` and the fitted boundary in
``fig2_boundary.csv`` / ``.md`` into ``--out-dir`` (default
``./reproduce_output``); ``--update-docs`` writes them into ``docs/figures``
instead. The committed figure, made by the first command:

.. image:: /figures/fig2.png
   :alt: Figures 2a and 2b, success probability over a grid of n and d

.. csv-table:: The boundary: smallest n with success probability >= 1/2
   :file: /figures/fig2_boundary.csv
   :header-rows: 1
"""

# sphinx_gallery_thumbnail_path = 'figures/fig2.png'

import argparse
import csv
import math
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _tracing import add_output_arguments, chosen_out_dir  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402

from sklearn_relu import ReLURegressor, make_relu_regression  # noqa: E402

THRESHOLD = 1e-4  # relative error that counts as success
STEP_BUDGET = 1000


def trial(solver, bits, n, d, seed):
    """Fit one planted problem; True when the relative error is <= THRESHOLD."""
    X, y, w_star = make_relu_regression(n, d, coef=True, random_state=seed)
    est = ReLURegressor(solver=solver, bits=bits, fit_intercept=False, tol=None,
                        random_state=seed)
    batch_size = min(200, n)  # the estimator's "auto" batch
    est.set_params(max_iter=math.ceil(STEP_BUDGET * batch_size / n))
    with warnings.catch_warnings():
        # Below the transition some fits diverge or stall: that is a failure
        # to count, not an error.
        warnings.simplefilter("ignore")
        try:
            est.fit(X, y)
        except FloatingPointError:
            return False
    return bool(np.linalg.norm(est.coef_ - w_star) <= THRESHOLD * np.linalg.norm(w_star))


def cell(solver, bits, n, d, trials, seed):
    return sum(trial(solver, bits, n, d, seed + 1000 * t) for t in range(trials))


def boundary(probability, ns, ds):
    """Smallest n with probability >= 1/2 for each d (None if never)."""
    out = []
    for j in range(len(ds)):
        hits = np.flatnonzero(probability[:, j] >= 0.5)
        out.append(ns[hits[0]] if hits.size else None)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Reproduce Figures 2a/2b (phase transitions) of the paper.")
    parser.add_argument("--full", action="store_true",
                        help="d = 10..100, n = 10..400 step 10, 20 trials a cell")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--bits", type=int, default=8, help="QSGD bits (Figure 2b)")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    args.out_dir = chosen_out_dir(args)
    if args.full:
        ds, ns, trials = np.arange(10, 101, 10), np.arange(10, 401, 10), 20
    else:
        ds, ns, trials = np.arange(10, 61, 10), np.arange(10, 251, 15), 8
    trials = args.trials or trials
    args.out_dir.mkdir(parents=True, exist_ok=True)

    schemes = [("sgd", 8, "Figure 2a: SGD"),
               ("qsgd", args.bits, f"Figure 2b: QSGD, {args.bits} bits")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    cells, bounds = [], []
    for (solver, bits, title), ax in zip(schemes, axes):
        start = time.perf_counter()
        probability = np.zeros((len(ns), len(ds)))
        for j, d in enumerate(ds):
            counts = Parallel(n_jobs=args.n_jobs)(
                delayed(cell)(solver, bits, int(n), int(d), trials, args.seed)
                for n in ns
            )
            probability[:, j] = np.array(counts) / trials
            cells += [
                {"solver": solver, "bits": bits if solver == "qsgd" else "",
                 "d": int(d), "n": int(n), "trials": trials, "successes": c}
                for n, c in zip(ns, counts)
            ]
            print(f"[fig2] {solver} d={d}: P(success) by n = "
                  + " ".join(f"{p:.2f}" for p in probability[:, j])
                  + f" ({time.perf_counter() - start:.0f} s)", flush=True)
        step_n, step_d = ns[1] - ns[0], ds[1] - ds[0]
        image = ax.imshow(
            probability, origin="lower", aspect="auto", cmap="gray", vmin=0, vmax=1,
            extent=(ds[0] - step_d / 2, ds[-1] + step_d / 2,
                    ns[0] - step_n / 2, ns[-1] + step_n / 2),
        )
        n50 = boundary(probability, ns, ds)
        known = [(d, n) for d, n in zip(ds, n50) if n is not None]
        if known:
            dd, nn = np.array(known, dtype=float).T
            slope = float(dd @ nn / (dd @ dd))
            ax.plot(ds, slope * ds, "r--", label=f"n = {slope:.2f} d")
            ax.legend(loc="upper left")
        bounds += [{"scheme": title.split(": ")[1], "d": int(d),
                    "smallest n with P >= 1/2": "-" if n is None else int(n),
                    "ratio n/d": "-" if n is None else f"{n / d:.2f}"}
                   for d, n in zip(ds, n50)]
        ax.set(title=title, xlabel="d (features)")
    axes[0].set_ylabel("n (samples)")
    fig.colorbar(image, ax=axes, label=f"P(relative error <= {THRESHOLD:g})")
    fig.savefig(args.out_dir / "fig2.png", dpi=110)
    plt.close(fig)

    for rows, name in ((cells, "fig2"), (bounds, "fig2_boundary")):
        with open(args.out_dir / f"{name}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    header = list(bounds[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[k]) for k in header) + " |" for r in bounds]
    (args.out_dir / "fig2_boundary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
