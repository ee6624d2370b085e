"""Local steps and averaged iterates: rounds, bytes and time to a relative error.

    python -m benchmarks.local_steps [--out-dir benchmarks/results] [--quick]
    python -m benchmarks.local_steps --from-json benchmarks/results/local_steps.json \
        --update-docs    # the figure again, from a run's results

Part 1, fewer rounds. The noiseless planted model (d = 400, 8 workers with
2500 rows each, 100 points a worker a step), fitted with ``local_steps=H`` for
H in {1, 2, 4, 8, 16} and the solvers SGD (float64), QSGD 8-bit and IntSGD
8-bit, on i.i.d. shards and on heterogeneous ones
(``DirichletShards(alpha=0.1)`` over 10 target-quantile bins). A callback
stops each fit at relative error 1e-6 of w; the table gives the rounds (of
communication), the local steps, the bytes a worker sent and the seconds to
get there, every fit in one run, in-process. Each H uses its own
``learning_rate="auto"``; H = 1 is also run at the step the local steps take
(a worker's share of the batch), the fixed-step comparison of the Local SGD
literature, to separate the gain of the rounds from that of the step.

Part 2, drift. On noisy data (sigma = 0.5) the shards' own minimisers differ
when the shards are heterogeneous: local steps then end away from the model
of the whole data. Reported: the relative distance of each H's model
(averaged after the first epoch, at the local steps' step 0.2) from the i.i.d.
H = 1 model's; the i.i.d. rows give the distance that is SGD's noise alone.

Part 3, averaged iterates. Noisy data (sigma = 0.5, d = 100, n = 20000), the
constant ``"auto"`` step, 20 epochs: the relative error of w of the last
iterate and of ``average=True`` (and ``average=n``, the tail after one epoch).

Targets (issue: local steps and averaged iterates): H = 8 reaches 1e-6 in at
most 1/5 of the rounds H = 1 needs; IntSGD with H = 8 sends at least 30 times
fewer bytes to 1e-6 than SGD at H = 1; ``average=True`` ends with at most
half the last iterate's error.
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time
import warnings

import numpy as np

from sklearn_relu import DirichletShards, ReLURegressor, make_relu_regression

SOLVERS = {
    "sgd": dict(solver="sgd"),
    "qsgd8": dict(solver="qsgd", bits=8),
    "intsgd8": dict(solver="intsgd", bits=8),
}
LOCAL_STEPS = (1, 2, 4, 8, 16)
TARGET = 1e-6


class StopAt:
    """A callback stopping the fit at relative error ``target`` of ``w``."""

    def __init__(self, w, target):
        self.w, self.norm, self.target = w, np.linalg.norm(w), target

    def __call__(self, info):
        return np.linalg.norm(info.params[: self.w.shape[0]] - self.w) <= self.target * self.norm


def to_target(X, y, w, *, solver, local_steps, shards, n_workers, batch_size, max_iter,
              learning_rate="auto"):
    """One fit stopped at the target: its rounds, steps, bytes a worker, seconds."""
    est = ReLURegressor(
        **SOLVERS[solver], local_steps=local_steps, shards=shards, n_workers=n_workers,
        batch_size=batch_size, learning_rate=learning_rate, fit_intercept=False,
        tol=None, max_iter=max_iter, random_state=0, callback=StopAt(w, TARGET),
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    seconds = time.perf_counter() - start
    record = est.comm_record_
    error = float(np.linalg.norm(est.coef_ - w) / np.linalg.norm(w))
    return dict(
        solver=solver, local_steps=local_steps, reached=bool(est.stopped_by_callback_),
        error=error, rounds=record.n_rounds, steps=est.t_,
        bytes_per_worker=record.bytes_sent / n_workers, seconds=seconds,
        learning_rate=est.learning_rate_,
    )


def rounds_study(args):
    n_workers, per_worker = 8, 2500
    X, y, w = make_relu_regression(
        n_samples=n_workers * per_worker, n_features=args.d, coef=True, random_state=0
    )
    batch_size = 100 * n_workers
    rows = []
    for split, shards in (("iid", None), ("dirichlet0.1", DirichletShards(alpha=0.1))):
        for solver in SOLVERS:
            for local_steps in LOCAL_STEPS:
                row = to_target(X, y, w, solver=solver, local_steps=local_steps,
                                shards=shards, n_workers=n_workers, batch_size=batch_size,
                                max_iter=args.max_iter)
                row.update(split=split, step="auto")
                rows.append(row)
                print(json.dumps(row), flush=True)
            # H = 1 at the local steps' step (a worker's share of the batch).
            local_rate = next(r["learning_rate"] for r in rows
                              if r["split"] == split and r["solver"] == solver
                              and r["local_steps"] == 2)
            row = to_target(X, y, w, solver=solver, local_steps=1, shards=shards,
                            n_workers=n_workers, batch_size=batch_size,
                            max_iter=args.max_iter, learning_rate=local_rate)
            row.update(split=split, step="local")
            rows.append(row)
            print(json.dumps(row), flush=True)
    # Larger batches a worker: the step of one worker's share comes closer to
    # the whole batch's, and H local steps closer to H steps.
    for per_worker in (400, 1000):
        for local_steps in (1, 8):
            row = to_target(X, y, w, solver="sgd", local_steps=local_steps, shards=None,
                            n_workers=n_workers, batch_size=per_worker * n_workers,
                            max_iter=args.max_iter)
            row.update(split="iid", step=f"auto, batch {per_worker} a worker")
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def drift_study(args):
    n_workers = 8
    X, y = make_relu_regression(n_samples=20000, n_features=100, noise=0.5, random_state=1)
    rows, models = [], {}
    for split, shards in (("iid", None), ("dirichlet0.1", DirichletShards(alpha=0.1))):
        for local_steps in (1, 4, 16):
            est = ReLURegressor(
                local_steps=local_steps, shards=shards, n_workers=n_workers,
                batch_size=800, learning_rate=0.2, average=20000, tol=None,
                max_iter=args.drift_epochs, fit_intercept=False, random_state=0,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X, y)
            models[split, local_steps] = est.coef_
            reference = models["iid", 1]
            rows.append(dict(
                split=split, local_steps=local_steps,
                distance=float(np.linalg.norm(est.coef_ - reference)
                               / np.linalg.norm(reference)),
            ))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def average_study(args):
    X, y, w = make_relu_regression(n_samples=20000, n_features=100, noise=0.5, coef=True,
                                   random_state=0)
    rows = []
    for average in (False, True, 20000):
        est = ReLURegressor(average=average, tol=None, max_iter=20, fit_intercept=False,
                            random_state=0).fit(X, y)
        rows.append(dict(average=average, learning_rate=est.learning_rate_,
                         error=float(np.linalg.norm(est.coef_ - w) / np.linalg.norm(w))))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def check(rounds, average):
    """PASS/FAIL lines of the targets."""
    def find(split, solver, local_steps, step="auto"):
        return next(r for r in rounds if (r["split"], r["solver"], r["local_steps"],
                                          r["step"]) == (split, solver, local_steps, step))

    lines = []
    one, eight = find("iid", "sgd", 1), find("iid", "sgd", 8)
    ratio = eight["rounds"] / one["rounds"]
    lines.append(f"rounds H=8 / H=1 (SGD, i.i.d., each its auto step): {ratio:.3f} "
                 f"(target <= 0.2): {'PASS' if ratio <= 0.2 else 'FAIL'}")
    fixed = find("iid", "sgd", 1, "local")
    ratio_fixed = eight["rounds"] / fixed["rounds"]
    lines.append(f"rounds H=8 / H=1 at the local step: {ratio_fixed:.3f}")
    intsgd = find("iid", "intsgd8", 8)
    bytes_ratio = one["bytes_per_worker"] / intsgd["bytes_per_worker"]
    lines.append(f"bytes SGD H=1 / IntSGD H=8: {bytes_ratio:.1f} (target >= 30): "
                 f"{'PASS' if bytes_ratio >= 30 else 'FAIL'}")
    lines.append(f"bytes SGD H=1 at the local step / IntSGD H=8: "
                 f"{fixed['bytes_per_worker'] / intsgd['bytes_per_worker']:.1f}")
    last, mean = average[0]["error"], average[1]["error"]
    lines.append(f"average=True error / last iterate's: {mean / last:.3f} (target <= 0.5): "
                 f"{'PASS' if mean <= 0.5 * last else 'FAIL'}")
    return lines


def machine():
    """``"<cores>-core <CPU model>"``, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.machine()
    return f"{os.cpu_count()}-core {model}"


def markdown(rounds, drift, average, lines, command):
    out = [
        "# Local steps and averaged iterates", "",
        f"`{command}`; {time.strftime('%Y-%m-%d')}, {machine()}, "
        "in-process backend, one process.", "",
        "| shards | solver | H | step | reached 1e-6 | rounds | local steps | "
        "bytes a worker | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        reached = "yes" if r["reached"] else f"no: {r['error']:.2g}"
        out.append(
            f"| {r['split']} | {r['solver']} | {r['local_steps']} | {r['step']} "
            f"({r['learning_rate']:.3g}) | {reached} "
            f"| {r['rounds']} | {r['steps']} | {r['bytes_per_worker']:.0f} | {r['seconds']:.2f} |"
        )
    out += ["", "| shards | H | distance from i.i.d. H=1 |", "|---|---|---|"]
    out += [f"| {r['split']} | {r['local_steps']} | {r['distance']:.3g} |" for r in drift]
    out += ["", "| average | step | relative error of w |", "|---|---|---|"]
    out += [f"| {r['average']} | {r['learning_rate']:.3g} | {r['error']:.3g} |"
            for r in average]
    out += ["", *[f"- {line}" for line in lines], ""]
    return "\n".join(out)


def plot(rounds, path):
    """Rounds and bytes a worker to 1e-6 against H, a line per solver and
    shards (each H at its own "auto" step; H = 1 at the local step dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (split, style) in (("iid", "-"), ("dirichlet0.1", "--")):
        for solver, color in zip(SOLVERS, ("C0", "C1", "C2")):
            rows = [r for r in rounds if r["split"] == split and r["solver"] == solver
                    and r["step"] == "auto"]
            H = [r["local_steps"] for r in rows]
            label = f"{solver}, {'i.i.d.' if split == 'iid' else 'Dirichlet(0.1)'}"
            axes[0].plot(H, [r["rounds"] for r in rows], style, color=color, marker="o",
                         label=label)
            axes[1].plot(H, [r["bytes_per_worker"] for r in rows], style, color=color,
                         marker="o", label=label)
            fixed = [r for r in rounds if r["split"] == split and r["solver"] == solver
                     and r["step"] == "local"]
            if split == "iid" and fixed:
                axes[0].plot([1], [fixed[0]["rounds"]], "x", color=color, markersize=9)
                axes[1].plot([1], [fixed[0]["bytes_per_worker"]], "x", color=color,
                             markersize=9)
    for ax, what in zip(axes, ("rounds to relative error 1e-6", "bytes a worker to 1e-6")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("local steps H")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Local steps on the planted model (d = 400, 8 workers); x: H = 1 at the "
                 "local step", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="benchmarks/results")
    parser.add_argument("--d", type=int, default=400)
    parser.add_argument("--max-iter", type=int, default=60)
    parser.add_argument("--drift-epochs", type=int, default=30)
    parser.add_argument("--quick", action="store_true",
                        help="a small problem, to check that the script runs")
    parser.add_argument("--from-json", help="draw the figure from a run's results only")
    parser.add_argument("--update-docs", action="store_true",
                        help="also write the figure to docs/figures/local_steps.png")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = [out / "local_steps.png"]
    if args.update_docs:
        figures.append(pathlib.Path(__file__).parents[1] / "docs/figures/local_steps.png")
    if args.from_json:
        rounds = json.loads(pathlib.Path(args.from_json).read_text())["rounds"]
        for figure in figures:
            plot(rounds, figure)
        return 0
    if args.quick:
        args.d, args.max_iter, args.drift_epochs = 20, 20, 2
    rounds = rounds_study(args)
    drift = drift_study(args)
    average = average_study(args)
    lines = check(rounds, average)
    print("\n".join(lines))
    command = "python -m benchmarks.local_steps" + (" --quick" if args.quick else "")
    for figure in figures:
        plot(rounds, figure)
    (out / "local_steps.md").write_text(markdown(rounds, drift, average, lines, command))
    (out / "local_steps.json").write_text(json.dumps(
        dict(rounds=rounds, drift=drift, average=average), indent=1))
    return 0 if all("FAIL" not in line for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
