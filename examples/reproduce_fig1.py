"""
Figure 1: geometric convergence, batch size and bit width
=========================================================

Reproduces Figure 1 of Kalan, Soltanolkotabi and Avestimehr (2019) on the
planted model of :ref:`theory-model` (``x ~ N(0, I_d)``, ``y = max(0, <w*, x>)``, no
noise, no intercept), starting from the spectral initialization:

* **Figure 1a** -- relative error ``||w_t - w*|| / ||w*||`` against the step
  ``t`` for several batch sizes, plain SGD. The paper's claim: the error falls
  geometrically (a straight line on the log scale) and a larger batch needs
  fewer steps.
* **Figure 1b** -- the same for QSGD at several bit widths with a fixed batch,
  exact SGD as the reference. The claim: QSGD converges geometrically too, and
  at 8 bits it is indistinguishable from SGD while sending an eighth of the bits; fewer
  bits mean a smaller step (the quantizer's variance) and slower convergence.

The error is recorded at the start and after every step by the estimator's
``callback`` (``ErrorTrace`` in ``examples/_tracing.py``), which stops the fit
once the curve is long enough; the estimator fits exactly as it always does.
``learning_rate="auto"`` picks each curve's step size from the data.

Run it from the repository root (about a minute on 2 cores)::

    python examples/reproduce_fig1.py              # both panels, d=1000, n=20000
    python examples/reproduce_fig1.py --panels a   # Figure 1a only
    python examples/reproduce_fig1.py --paper-size # d=4000, n=20000, the paper's size

It writes ``fig1a.png`` and ``fig1b.png`` with their tables (``.csv`` and
``.md``) into ``--out-dir`` (default ``./reproduce_output``); ``--update-docs``
writes them into ``docs/figures`` instead, over the ones below. The figures
committed with the repository, made by the first command:

.. image:: /figures/fig1a.png
   :alt: Figure 1a, relative error against step for several batch sizes

.. csv-table:: Figure 1a: steps to reach relative error 1e-6
   :file: /figures/fig1a.csv
   :header-rows: 1

.. image:: /figures/fig1b.png
   :alt: Figure 1b, relative error against step for several bit widths

.. csv-table:: Figure 1b: steps and bytes to reach relative error 1e-6
   :file: /figures/fig1b.csv
   :header-rows: 1
"""

# sphinx_gallery_thumbnail_path = 'figures/fig1a.png'

import argparse
import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _tracing import (  # noqa: E402
    ErrorTrace,
    add_output_arguments,
    chosen_out_dir,
    first_reaching,
    write_table,
)

from sklearn_relu import ReLURegressor, make_relu_regression  # noqa: E402

TARGET = 1e-6  # the error the tables count steps to


def trace(X, y, w_star, n_steps, *, random_state, **params):
    """Fit for ``n_steps`` steps; return the error curve and the estimator."""
    tracer = ErrorTrace(w_star, n_steps)
    # max_iter counts epochs of n/batch_size steps; tol=None runs them all,
    # and the tracer stops the fit after n_steps.
    epochs = math.ceil(n_steps * params["batch_size"] / X.shape[0])
    est = ReLURegressor(
        fit_intercept=False, tol=None, max_iter=epochs, callback=tracer,
        random_state=random_state, **params,
    ).fit(X, y)
    return np.array(tracer.errors), est


def fmt(value):
    return "-" if value is None else value


def panel_a(X, y, w_star, args):
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = []
    for batch_size in args.batch_sizes:
        start = time.perf_counter()
        errors, est = trace(
            X, y, w_star, args.steps_a, batch_size=batch_size, solver="sgd",
            random_state=args.seed,
        )
        seconds = time.perf_counter() - start
        hit = first_reaching(errors, TARGET)
        print(
            f"[fig1a] batch {batch_size:>5}: step size {est.learning_rate_:.3f}, "
            f"error {errors[-1]:.1e} after {len(errors) - 1} steps, "
            f"1e-6 at step {fmt(hit)} ({seconds:.1f} s)", flush=True,
        )
        ax.semilogy(errors, label=f"m = {batch_size}")
        rows.append({
            "batch size": batch_size,
            "step size": f"{est.learning_rate_:.3f}",
            "steps to 1e-6": fmt(hit),
            f"error at step {len(errors) - 1}": f"{errors[-1]:.1e}",
        })
    ax.set(
        xlabel="step t", ylabel=r"relative error $\|w_t - w^*\| / \|w^*\|$",
        title=f"Figure 1a: SGD, n = {X.shape[0]}, d = {X.shape[1]}",
        ylim=(1e-16, 2),
    )
    ax.legend(title="batch size")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out_dir / "fig1a.png", dpi=110)
    plt.close(fig)
    write_table(rows, args.out_dir / "fig1a")


def panel_b(X, y, w_star, args):
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = []
    schemes = [("sgd", None)] + [("qsgd", bits) for bits in args.bits]
    for solver, bits in schemes:
        start = time.perf_counter()
        errors, est = trace(
            X, y, w_star, args.steps_b, batch_size=args.batch_size, solver=solver,
            bits=bits or 8, n_workers=args.n_workers, random_state=args.seed,
        )
        seconds = time.perf_counter() - start
        hit = first_reaching(errors, TARGET)
        record = est.comm_record_
        message = record.bytes_sent / record.n_messages
        label = "SGD (float64)" if solver == "sgd" else f"QSGD, {bits} bits"
        print(
            f"[fig1b] {label:>14}: step size {est.learning_rate_:.4f}, "
            f"{message:.0f} bytes a message, error {errors[-1]:.1e} after "
            f"{len(errors) - 1} steps, 1e-6 at step {fmt(hit)} ({seconds:.1f} s)",
            flush=True,
        )
        style = {"color": "black", "linestyle": "--"} if solver == "sgd" else {}
        ax.semilogy(errors, label=label, **style)
        to_target = None if hit is None else hit * args.n_workers * message / 1e6
        rows.append({
            "scheme": label,
            "bytes per message": f"{message:.0f}",
            "step size": f"{est.learning_rate_:.4f}",
            "steps to 1e-6": fmt(hit),
            "MB sent to 1e-6": fmt(None if to_target is None else f"{to_target:.2f}"),
            f"error at step {len(errors) - 1}": f"{errors[-1]:.1e}",
        })
    ax.set(
        xlabel="step t", ylabel=r"relative error $\|w_t - w^*\| / \|w^*\|$",
        title=(
            f"Figure 1b: QSGD, batch {args.batch_size}, n = {X.shape[0]}, "
            f"d = {X.shape[1]}"
        ),
        ylim=(1e-16, 2),
    )
    ax.legend(loc="upper right")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out_dir / "fig1b.png", dpi=110)
    plt.close(fig)
    write_table(rows, args.out_dir / "fig1b")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Reproduce Figure 1 (a: batch sizes, b: bit widths) of the paper.",
    )
    parser.add_argument("--panels", nargs="+", choices=["a", "b"], default=["a", "b"])
    parser.add_argument("--n-features", type=int, default=1000, help="d")
    parser.add_argument("--n-samples", type=int, default=None, help="n (default 20d)")
    parser.add_argument(
        "--paper-size", action="store_true",
        help="d=4000, n=20000, the size of the paper's runs (several minutes)",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+",
                        default=[100, 250, 500, 1000, 2000], help="Figure 1a")
    parser.add_argument("--steps-a", type=int, default=800, help="steps in Figure 1a")
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4, 8],
                        help="Figure 1b")
    parser.add_argument("--batch-size", type=int, default=500, help="Figure 1b")
    parser.add_argument("--steps-b", type=int, default=3000, help="steps in Figure 1b")
    parser.add_argument("--n-workers", type=int, default=1,
                        help="workers quantizing their share of the batch (Figure 1b)")
    parser.add_argument("--seed", type=int, default=0)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    args.out_dir = chosen_out_dir(args)
    if args.paper_size:
        args.n_features, args.n_samples = 4000, 20000
    if args.n_samples is None:
        args.n_samples = 20 * args.n_features
    return args


def main(argv=None):
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    X, y, w_star = make_relu_regression(
        n_samples=args.n_samples, n_features=args.n_features, coef=True,
        random_state=args.seed,
    )
    print(f"planted ReLU: n={X.shape[0]}, d={X.shape[1]}; writing to {args.out_dir}")
    if "a" in args.panels:
        panel_a(X, y, w_star, args)
    if "b" in args.panels:
        panel_b(X, y, w_star, args)


if __name__ == "__main__":
    main()
