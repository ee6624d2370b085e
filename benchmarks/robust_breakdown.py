"""The figure of docs/robust.rst: final relative error against the number of
Byzantine workers, one panel per attack, one line per aggregation rule.

    python -m benchmarks.robust_breakdown [--epochs 60] [--out docs/figures]

The planted model of the targets: noiseless, d = 100, n = 20000, 10 workers
drawing 200 points each a step (batch 2000), no intercept, the spectral start
and ``learning_rate="auto"``, ``--epochs`` epochs of 10 steps (``tol=None``).
Workers 0 .. f-1 are Byzantine, f = 0 .. 5. A rule asked to withstand more
Byzantine workers than its breakdown point allows refuses (no point); a fit
that diverges is drawn at the top of the panel. Majority vote runs with
signSGD (its messages are signs), every other rule with exact gradients.
Writes ``robust_breakdown.csv`` and ``robust_breakdown.png``.
"""

import argparse
import csv
import time
import warnings
from pathlib import Path

import numpy as np

from sklearn_relu import ReLURegressor, make_relu_regression

RULES = ["mean", "geometric_median", "bgmd", "median", "trimmed_mean", "krum",
         "centered_clip", "majority"]
ATTACKS = ["sign_flip", "scaled", "gaussian", "zero"]
CEILING = 1e2
FLOOR = 1e-16


def final_error(X, y, w, rule, attack, n_byzantine, epochs):
    """The relative error after ``epochs``; ``inf`` if the fit diverged, None
    if the rule refuses that many Byzantine workers."""
    solver = "signsgd" if rule == "majority" else "sgd"
    est = ReLURegressor(
        solver=solver, aggregation=rule, n_byzantine=n_byzantine, attack=attack,
        n_workers=10, batch_size=2000, max_iter=epochs, tol=None,
        fit_intercept=False, random_state=0,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    except ValueError as error:
        if "withstands at most" in str(error):
            return None
        return np.inf  # the lies made the start's statistics meaningless
    except FloatingPointError:
        return np.inf
    error = np.linalg.norm(est.coef_ - w) / np.linalg.norm(w)
    return error if np.isfinite(error) else np.inf


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ATTACKS), figsize=(4 * len(ATTACKS), 3.6),
                             sharey=True)
    markers = dict(zip(RULES, "osD^v<>P"))
    for ax, attack in zip(axes, ATTACKS):
        for rule in RULES:
            points = [(r["n_byzantine"], r["error"]) for r in rows
                      if r["attack"] == attack and r["rule"] == rule
                      and r["error"] is not None]
            if not points:
                continue
            f, error = np.array(points, dtype=float).T
            shown = np.clip(error, FLOOR, CEILING)
            ax.plot(f, shown, marker=markers[rule], label=rule, alpha=0.8)
        ax.axhline(1e-6, color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_ylim(FLOOR / 3, CEILING * 3)
        ax.set_xticks(range(6))
        ax.set_title(f'attack="{attack}"')
        ax.set_xlabel("Byzantine workers of 10")
    axes[0].set_ylabel(f"final relative error (diverged: {CEILING:g})")
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--replot", action="store_true",
                        help="redraw the figure from the CSV of the last run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.replot:
        with open(out / "robust_breakdown.csv", newline="") as handle:
            rows = [
                dict(attack=r["attack"], rule=r["rule"], n_byzantine=int(r["n_byzantine"]),
                     error=None if r["final_relative_error"] == "refused"
                     else float(r["final_relative_error"]))
                for r in csv.DictReader(handle)
            ]
        plot(rows, out / "robust_breakdown.png")
        return
    X, y, w = make_relu_regression(n_samples=20000, n_features=100, coef=True,
                                   random_state=0)
    rows = []
    start = time.perf_counter()
    for attack in ATTACKS:
        for rule in RULES:
            for n_byzantine in range(6):
                error = final_error(X, y, w, rule, attack, n_byzantine, args.epochs)
                rows.append(dict(attack=attack, rule=rule, n_byzantine=n_byzantine,
                                 error=error))
                print(f"{attack:9s} {rule:16s} f={n_byzantine}: "
                      + ("refused" if error is None else f"{error:.3g}"), flush=True)
    with open(out / "robust_breakdown.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["attack", "rule", "n_byzantine", "final_relative_error"])
        for r in rows:
            writer.writerow([r["attack"], r["rule"], r["n_byzantine"],
                             "refused" if r["error"] is None else f"{r['error']:.3g}"])
    plot(rows, out / "robust_breakdown.png")
    print(f"wrote {out / 'robust_breakdown.png'} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
