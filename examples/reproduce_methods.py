"""
Every compressor on one problem: relative error against bytes sent
===================================================================

SGD, QSGD at 8, 4 and 2 bits, signSGD with majority vote, Signum (majority
vote), EF-signSGD, TernGrad and top-k (``k = d / 10``) with error feedback,
fitted to the same planted model (``x ~ N(0, I_d)``, ``y = max(0, <w*, x>)``,
no noise, no intercept, ``d = 100``, ``n = 20000``, seed 0) from the same
spectral start, with the same batch: 10 workers drawing 200 points each a
step. Each curve is the relative error ``||w_t - w*|| / ||w*||`` against the
bytes one worker has sent, counted from its messages (header included); the
table gives the bytes a worker sends to reach ``1e-3`` and ``1e-6``.

Step sizes are ``learning_rate="auto"``: constant for gradients (SGD, QSGD,
TernGrad, error feedback), and the halving sign schedule for sign directions
(see :class:`~sklearn_relu.ReLURegressor`).

Run it from the repository root (a few minutes on 2 cores)::

    python examples/reproduce_methods.py

It writes ``methods.png`` and ``methods.csv`` / ``methods.md`` into
``--out-dir`` (default ``./reproduce_output``); ``--update-docs`` writes them
into ``docs/figures`` instead. The figure and table committed with the
repository, made by that command:

.. image:: /figures/methods.png
   :alt: relative error against bytes sent per worker, for every compressor

.. csv-table:: Bytes each worker sends to reach a relative error
   :file: /figures/methods.csv
   :header-rows: 1
"""

# sphinx_gallery_thumbnail_path = 'figures/methods.png'

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

TARGETS = (1e-3, 1e-6)

METHODS = {
    "SGD (float64)": dict(solver="sgd"),
    "QSGD, 8 bits": dict(solver="qsgd", bits=8),
    "QSGD, 4 bits": dict(solver="qsgd", bits=4),
    "QSGD, 2 bits": dict(solver="qsgd", bits=2),
    "signSGD, majority vote": dict(solver="signsgd", aggregation="majority"),
    "Signum, majority vote": dict(solver="signum", aggregation="majority"),
    "EF-signSGD": dict(solver="signsgd", error_feedback=True),
    "TernGrad": dict(solver="terngrad"),
    "top-k (d/10), EF": dict(solver="topk", k=0.1, error_feedback=True),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-features", type=int, default=100)
    parser.add_argument("--n-samples", type=int, default=20000)
    parser.add_argument("--n-workers", type=int, default=10)
    parser.add_argument("--per-worker", type=int, default=200)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    add_output_arguments(parser)
    args = parser.parse_args()
    args.out_dir = chosen_out_dir(args)
    X, y, w_star = make_relu_regression(
        n_samples=args.n_samples, n_features=args.n_features, coef=True,
        random_state=args.seed,
    )
    batch_size = args.n_workers * args.per_worker
    epochs = math.ceil(args.steps * batch_size / X.shape[0])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = []
    for label, params in METHODS.items():
        start = time.perf_counter()
        trace = ErrorTrace(w_star, args.steps)  # stops the fit after args.steps
        est = ReLURegressor(
            fit_intercept=False, tol=None, max_iter=epochs, batch_size=batch_size,
            n_workers=args.n_workers, callback=trace, random_state=args.seed,
            **params,
        ).fit(X, y)
        errors = np.array(trace.errors)
        record = est.comm_record_
        message = record.bytes_sent // record.n_messages
        sent = np.arange(errors.shape[0]) * message
        ax.loglog(sent[1:] / 1e3, errors[1:], label=label)
        row = {"method": label, "bytes a message": message}
        for target in TARGETS:
            hit = first_reaching(errors, target)
            row[f"steps to {target:g}"] = "-" if hit is None else hit
            row[f"kB a worker to {target:g}"] = (
                "-" if hit is None else f"{hit * message / 1e3:.1f}"
            )
        row[f"error at step {errors.shape[0] - 1}"] = f"{errors[-1]:.1e}"
        rows.append(row)
        print(f"{label}: {time.perf_counter() - start:.1f} s", flush=True)
    ax.set(
        xlabel="kB sent by each worker",
        ylabel=r"relative error $\|w_t - w^*\| / \|w^*\|$",
        title=(
            f"d = {X.shape[1]}, n = {X.shape[0]}, {args.n_workers} workers x "
            f"{args.per_worker} points a step"
        ),
        ylim=(1e-16, 2),
    )
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out_dir / "methods.png", dpi=110)
    plt.close(fig)
    write_table(rows, args.out_dir / "methods")


if __name__ == "__main__":
    main()
