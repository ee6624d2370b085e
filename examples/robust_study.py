"""
Byzantine robustness study: defences x attacks x f x heterogeneity
==================================================================

The final relative error ``||w - w*|| / ||w*||`` of fits on a planted ReLU
(``d = 40``, label noise ``sigma = 1``, no intercept, 16000 rows) with 10
workers drawing 160 rows each a step (``batch_size=1600``, 10 steps an epoch)
for 80 epochs, for every defence, every attack, ``f`` of the 10 workers
Byzantine and shards dealt by :class:`~sklearn_relu.DirichletShards` with
concentration ``alpha`` (``inf``: i.i.d., the default contiguous blocks of
the shuffled rows). A defence is an ``aggregation`` (a rule, possibly after a
pre-aggregator, ``"nnm+geometric_median"``), optionally with worker momentum
(``"nnm+geometric_median@0.9"`` is ``worker_momentum=0.9``). Its "none" error
is the same fit with the ``f`` Byzantine workers sending their true vectors
(``attack=Scaled(c=-1)``): the defence configured for ``f`` (trimming,
mixing, scoring as it would under attack) but not attacked. A fit that
diverges counts as error ``inf`` ("div."); a defence asked for more Byzantine
workers than it withstands has no value ("-").

Run it from the repository root, at low priority on a shared machine, in the
background (the whole grid takes hours)::

    nice -n 19 python examples/robust_study.py --n-jobs 2        # the whole grid
    nice -n 19 python examples/robust_study.py --f 3 --alpha inf \\
        --aggregators mean geometric_median nnm+geometric_median@0.9

Every fit's result is appended to ``robust_study.jsonl`` as it ends, and a
run first reads that file: an interrupted run started again with the same
settings fits only the cells still missing (``--no-fit`` writes what is
there, leaving those cells blank); the package's version is not among the
settings, so delete the file to refit after changing the package. It writes into ``--out-dir``
(default ``./reproduce_output``):

- ``robust_study.csv`` and ``robust_study.md``: every cell, each row's worst
  case over the attacks, and the issue's targets, met or not;
- ``robust_study_worst.csv``: at ``f = 3``, each defence's no-attack error,
  worst case (and the attack that made it) and their ratio, per ``alpha``;
- ``robust_study.png``: heatmaps at ``f = 3``, defences against attacks, one
  panel per ``alpha``; ``robust_study_f.png``: each defence's worst case for
  every ``f`` and ``alpha``.

``--update-docs`` writes them into ``docs/figures`` (the raw
``robust_study.jsonl`` into ``benchmarks/results``).
"""

import argparse
import csv
import json
import math
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _tracing import add_output_arguments, chosen_out_dir  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402

from sklearn_relu import (  # noqa: E402
    DirichletShards,
    ReLURegressor,
    make_relu_regression,
)
from sklearn_relu.attacks import OptimalALIE, OptimalIPM, Scaled  # noqa: E402

#: The rules, then the defences built from them (see docs/robust.rst, "The
#: study"): worker momentum on the geometric median and on centered clipping
#: (Karimireddy et al. 2021's recipe), NNM before the geometric median and the
#: trimmed mean (Allouah et al. 2023), bucketing before centered clipping
#: (Karimireddy et al. 2022; at most 2 of 10 Byzantine workers: 5 buckets).
AGGREGATORS = [
    "mean", "median", "trimmed_mean", "krum", "multi_krum", "geometric_median", "bgmd",
    "centered_clip",
    "geometric_median@0.9", "centered_clip@0.9",
    "nnm+geometric_median", "nnm+geometric_median@0.9",
    "nnm+trimmed_mean", "nnm+trimmed_mean@0.9",
    "bucketing+centered_clip", "bucketing+centered_clip@0.9",
]
ATTACKS = ["sign_flip", "alie", "ipm", "optimal_alie", "optimal_ipm", "mimic",
           "label_flip"]
#: The factors the optimal attacks search (the package's default is 0 to 10 by
#: 0.25: four times the fits' cost).
GRID = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0]
INF = float("inf")


class Failed(float):
    """The error of a fit that raised (other than a refusal beyond the rule's
    breakdown point): no model, counted as ``inf``, shown "fail"."""

    def __new__(cls):
        return super().__new__(cls, INF)


class Pending(float):
    """A cell not fitted yet (``--no-fit``): ``nan``, shown blank."""

    def __new__(cls):
        return super().__new__(cls, math.nan)
#: The results' directory under --update-docs (the figures go to docs/figures).
RAW_RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def parse_defence(spec):
    """``"rule"`` or ``"rule@beta"``: the aggregation and the worker momentum."""
    aggregation, _, beta = spec.partition("@")
    return aggregation, float(beta) if beta else 0.0


def label(spec):
    """How tables and figures name a defence: ``"rule"`` or ``"rule,
    momentum 0.9"`` (``rule@0.9`` would read as an e-mail address)."""
    aggregation, beta = parse_defence(spec)
    return f"{aggregation}, momentum {beta:g}" if beta else aggregation


def attack_object(name, grid):
    """What ``attack=`` gets for ``name``; "none" is an attacker that sends
    its true vectors, the optimal attacks search ``grid``."""
    if name == "none":
        return Scaled(c=-1.0)
    if name == "optimal_alie":
        return OptimalALIE(factors=grid)
    if name == "optimal_ipm":
        return OptimalIPM(factors=grid)
    return name


def final_error(cell, settings):
    """The final relative error of one cell's fit (``inf``: it diverged,
    ``nan``: the defence does not withstand ``f``), and its seconds."""
    start = time.perf_counter()
    X, y, w = make_relu_regression(
        n_samples=settings["n_samples"], n_features=40, noise=1.0, coef=True,
        random_state=settings["seed"],
    )
    aggregation, beta = parse_defence(cell["aggregation"])
    alpha = cell["alpha"]
    shards = None if alpha == INF else DirichletShards(
        alpha=alpha, n_bins=10, random_state=settings["seed"]
    )
    est = ReLURegressor(
        n_workers=10, batch_size=1600, max_iter=settings["epochs"], tol=None,
        fit_intercept=False, random_state=settings["seed"], aggregation=aggregation,
        worker_momentum=beta, n_byzantine=cell["f"],
        attack=attack_object(cell["attack"], settings["grid"]), shards=shards,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est.fit(X, y)
            error = float(np.linalg.norm(est.coef_ - w) / np.linalg.norm(w))
        except FloatingPointError:  # DivergenceError among them
            error = INF
        except ValueError as failure:
            if "withstands at most" not in str(failure):
                # Not the study's to judge: recorded, and listed under the table.
                return {**cell, "error": INF, "failure": str(failure),
                        "seconds": time.perf_counter() - start}
            error = math.nan  # beyond the rule's breakdown point
    if not math.isfinite(error) and not math.isnan(error):
        error = INF
    return {**cell, "error": error, "seconds": time.perf_counter() - start}


def cells_of(args):
    """Every cell of the grid, those of ``f = 3`` (the heatmap's) first."""
    return [
        dict(alpha=alpha, f=f, aggregation=spec, attack=attack)
        for f in sorted(args.f, reverse=True)
        for alpha in args.alpha
        for spec in args.aggregators
        for attack in ["none", *args.attacks]
    ]


def key(cell):
    return (cell["alpha"], cell["f"], cell["aggregation"], cell["attack"])


def run(args, settings, raw_path):
    """The errors of every cell, read from ``raw_path`` where an earlier run
    with the same settings left them, fitted (and appended) otherwise."""
    done = {}
    if raw_path.exists():
        for line in raw_path.read_text().splitlines():
            record = json.loads(line)
            if record.pop("settings") == settings:
                done[key(record)] = record
    todo = [cell for cell in cells_of(args) if key(cell) not in done]
    print(f"{len(done)} cells read from {raw_path}, {len(todo)} to fit", flush=True)
    if args.no_fit:
        todo = []
    start = time.perf_counter()
    results = Parallel(n_jobs=args.n_jobs, return_as="generator_unordered")(
        delayed(final_error)(cell, settings) for cell in todo
    )
    with open(raw_path, "a") as raw:
        for count, record in enumerate(results, 1):
            raw.write(json.dumps({**record, "settings": settings}) + "\n")
            raw.flush()
            done[key(record)] = record
            print(f"[{count}/{len(todo)} {time.perf_counter() - start:.0f} s] "
                  f"alpha={record['alpha']:g} f={record['f']} {record['aggregation']} "
                  f"{record['attack']}: {fmt(record['error'])} "
                  f"({record['seconds']:.0f} s)", flush=True)
    failures = [done[key(cell)] for cell in cells_of(args)
                if done.get(key(cell), {}).get("failure")]
    return table_rows(args, done), failures


def table_rows(args, done):
    rows = []
    for f in sorted(args.f):
        for alpha in args.alpha:
            for spec in args.aggregators:
                row = dict(alpha=alpha, f=f, aggregation=spec)
                for attack in ["none", *args.attacks]:
                    record = done.get((alpha, f, spec, attack))
                    if record is None:
                        row[attack] = Pending()
                    else:
                        row[attack] = Failed() if record.get("failure") else record["error"]
                rows.append(row)
    return rows


def worst(row, attacks):
    """The largest error over ``attacks`` and the attack that made it (the
    first of a tie), or ``(nan, "")`` when the defence does not withstand
    (``Pending`` while a cell is)."""
    if any(isinstance(row[a], Pending) for a in attacks):
        return Pending(), ""
    values = [(row[a], a) for a in attacks if not math.isnan(row[a])]
    if not values:
        return math.nan, ""
    return max(values, key=lambda pair: pair[0])


def ratio(a, b):
    if isinstance(a, Pending) or isinstance(b, Pending):
        return Pending()
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if math.isinf(a):
        return a
    return a / b


def fmt(value, digits=3):
    if isinstance(value, Pending):
        return ""
    if math.isnan(value):
        return "-"
    if isinstance(value, Failed):
        return "fail"
    if math.isinf(value):
        return "div."
    return f"{value:.{digits}f}"


def targets(rows, attacks):
    """The issue's targets, from the rows of f = 3 (where present)."""
    lines = []
    by = {(r["alpha"], r["f"], r["aggregation"]): r for r in rows}
    defences = [a for a in dict.fromkeys(r["aggregation"] for r in rows) if a != "mean"]
    f = 3

    def best(alpha):
        """The defence of least worst case at (alpha, f = 3), and its row."""
        scored = [(worst(by[alpha, f, a], attacks)[0], a) for a in defences
                  if (alpha, f, a) in by]
        scored = [s for s in scored if not math.isnan(s[0])]
        return min(scored)[1] if scored else None

    def describe(row):
        value, attack = worst(row, attacks)
        return (f"{label(row['aggregation'])}: worst case {fmt(value)} ({attack}), no attack "
                f"{fmt(row['none'])}, {fmt(ratio(value, row['none']), 2)}x")

    name = best(INF)
    if name is not None:
        row = by[INF, f, name]
        value = ratio(worst(row, attacks)[0], row["none"])
        least = min(((ratio(worst(by[INF, f, a], attacks)[0], by[INF, f, a]["none"]), a)
                     for a in defences if (INF, f, a) in by
                     and not math.isnan(worst(by[INF, f, a], attacks)[0])))
        lines.append(
            f"- i.i.d., f = 3: the best defence, {describe(row)} its no-attack error "
            f"(target at most 1.5x: {'met' if value <= 1.5 else 'not met'}); the least "
            f"ratio is {label(least[1])}'s, {fmt(least[0], 2)}x."
        )
    name = best(1.0)
    if name is not None and (1.0, f, "geometric_median") in by:
        row, plain = by[1.0, f, name], by[1.0, f, "geometric_median"]
        value = ratio(worst(row, attacks)[0], worst(plain, attacks)[0])
        lines.append(
            f"- alpha = 1, f = 3: the best defence, {describe(row)}; the plain "
            f"{describe(plain)}. The best is {fmt(value, 2)}x the plain rule's worst "
            f"case (target at most 0.7x: {'met' if value <= 0.7 else 'not met'})."
        )
    name = best(0.1)
    if name is not None:
        lines.append(f"- alpha = 0.1, f = 3: the best defence, {describe(by[0.1, f, name])}.")
    for alpha in dict.fromkeys(r["alpha"] for r in rows):
        if (alpha, f, "mean") in by:
            row = by[alpha, f, "mean"]
            broken = {a: row[a] for a in ("label_flip", "optimal_alie") if a in row}
            if any(isinstance(value, Pending) for value in broken.values()):
                continue
            verdict = all(v > 0.5 for v in broken.values())
            lines.append(
                f"- alpha = {alpha:g}, f = 3: the mean under "
                + ", ".join(f"{a} {fmt(v)}" for a, v in broken.items())
                + f" (target: breaks, error > 0.5 or divergence: "
                f"{'met' if verdict else 'not met'})."
            )
    return lines


def write_tables(rows, failures, args, settings_text):
    attacks = args.attacks
    out = args.out_dir
    names = ["none", *attacks]
    with open(out / "robust_study.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["alpha", "f", "aggregation", *names, "worst", "worst attack",
                         "worst/none"])
        for r in rows:
            value, attack = worst(r, attacks)
            writer.writerow([f"{r['alpha']:g}", r["f"], label(r["aggregation"]),
                             *(fmt(r[c]) for c in names), fmt(value), attack,
                             fmt(ratio(value, r["none"]), 2)])
    three = [r for r in rows if r["f"] == 3]
    if three:
        alphas = list(dict.fromkeys(r["alpha"] for r in three))
        with open(out / "robust_study_worst.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["defence"] + [
                f"alpha = {alpha:g}: {part}" for alpha in alphas
                for part in ("none", "worst (attack)", "worst/none")
            ])
            for spec in args.aggregators:
                cells = []
                for alpha in alphas:
                    r = next(r for r in three if r["alpha"] == alpha
                             and r["aggregation"] == spec)
                    value, attack = worst(r, attacks)
                    cells += [fmt(r["none"]),
                              f"{fmt(value)} ({attack})" if attack else fmt(value),
                              fmt(ratio(value, r["none"]), 2)]
                writer.writerow([label(spec), *cells])
    lines = [
        "| alpha | f | aggregation | " + " | ".join(names)
        + " | worst | worst attack | worst/none |",
        "|" + "---|" * (len(names) + 6),
    ]
    for r in rows:
        value, attack = worst(r, attacks)
        lines.append(
            f"| {r['alpha']:g} | {r['f']} | {label(r['aggregation'])} | "
            + " | ".join(fmt(r[c]) for c in names)
            + f" | {fmt(value)} | {attack} | {fmt(ratio(value, r['none']), 2)} |"
        )
    text = ["Final relative error ||w - w*|| / ||w*|| (" + settings_text + ").", "",
            *lines, "", "Targets:", "", *targets(rows, attacks), ""]
    if failures:
        text += ["Fits that raised (shown as fail):", ""] + [
            f"- alpha = {r['alpha']:g}, f = {r['f']}, {label(r['aggregation'])}, "
            f"{r['attack']}: "
            f"{r['failure']}" for r in failures
        ] + [""]
    (out / "robust_study.md").write_text("\n".join(text))
    print("\n".join(text))


def heatmap(ax, cells, row_names, column_names, title):
    """log10 error, annotated; a diverged or failed fit at the top of the
    scale, a refused one grey."""
    values = np.array(cells, dtype=float)
    shown = np.log10(np.clip(np.where(np.isinf(values), 10.0, values), 1e-2, 10.0))
    image = ax.imshow(np.ma.masked_invalid(shown), cmap="magma_r", vmin=-2, vmax=1,
                      aspect="auto")
    ax.set_facecolor("0.85")
    ax.set_xticks(range(len(column_names)), column_names, rotation=60, ha="right",
                  fontsize=7)
    ax.set_yticks(range(len(row_names)), row_names, fontsize=7)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            dark = not math.isnan(shown[i, j]) and shown[i, j] > -0.6
            ax.text(j, i, fmt(cells[i][j]).replace("0.", "."), ha="center",
                    va="center", fontsize=5.5, color="white" if dark else "black")
    ax.set_title(title, fontsize=9)
    return image


def write_figures(rows, args):
    attacks, out = args.attacks, args.out_dir
    names = ["none", *attacks]
    alphas = list(dict.fromkeys(r["alpha"] for r in rows))
    f_top = max(r["f"] for r in rows)
    fig, axes = plt.subplots(1, len(alphas), figsize=(4.0 * len(alphas) + 1, 5.2),
                             squeeze=False, constrained_layout=True)
    for ax, alpha in zip(axes[0], alphas):
        part = [r for r in rows if r["f"] == f_top and r["alpha"] == alpha]
        image = heatmap(ax, [[r[c] for c in names] for r in part],
                        [label(r["aggregation"]) for r in part], names,
                        f"f = {f_top} of 10, alpha = {alpha:g}")
        if ax is not axes[0][0]:
            ax.set_yticks([])
    fig.colorbar(image, ax=axes[0].tolist(), label="relative error (log10)", shrink=0.8)
    fig.savefig(out / "robust_study.png", dpi=120)
    plt.close(fig)

    columns = [(alpha, f) for alpha in alphas for f in sorted({r["f"] for r in rows})]
    by = {(r["alpha"], r["f"], r["aggregation"]): r for r in rows}
    values = [[worst(by[alpha, f, spec], attacks)[0] for alpha, f in columns]
              for spec in args.aggregators]
    fig, ax = plt.subplots(figsize=(0.55 * len(columns) + 3, 5.2),
                           constrained_layout=True)
    image = heatmap(ax, values, [label(spec) for spec in args.aggregators],
                    [f"a={alpha:g} f={f}" for alpha, f in columns],
                    "worst case over the attacks")
    fig.colorbar(image, ax=ax, label="relative error (log10)", shrink=0.8)
    fig.savefig(out / "robust_study_f.png", dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--n-samples", type=int, default=16000,
                        help="training rows (16000: 10 steps an epoch)")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--f", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--alpha", type=float, nargs="+", default=[INF, 1.0, 0.1])
    parser.add_argument("--aggregators", nargs="+", default=AGGREGATORS,
                        help="defences: an aggregation, '@beta' for worker momentum")
    parser.add_argument("--attacks", nargs="+", default=ATTACKS)
    parser.add_argument("--grid", type=float, nargs="+", default=GRID,
                        help="factors the optimal attacks search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=1,
                        help="fits run at once (joblib processes)")
    parser.add_argument("--no-fit", action="store_true",
                        help="only write what the results file holds (a run in "
                        "progress): cells not fitted yet are left blank")
    add_output_arguments(parser)
    args = parser.parse_args()
    args.out_dir = chosen_out_dir(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    raw_dir = RAW_RESULTS if args.update_docs else args.out_dir
    settings = dict(n_samples=args.n_samples, epochs=args.epochs, seed=args.seed,
                    grid=args.grid)
    start = time.perf_counter()
    rows, failures = run(args, settings, raw_dir / "robust_study.jsonl")
    settings_text = (
        f"n = {args.n_samples}, d = 40, noise sigma = 1, 10 workers x 160 rows a step, "
        f"{args.epochs} epochs, seed {args.seed}; optimal attacks search "
        f"{len(args.grid)} factors from {min(args.grid):g} to {max(args.grid):g}"
    )
    write_tables(rows, failures, args, settings_text)
    write_figures(rows, args)
    print(f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
