"""An epoch on sparse (CSR) data against scikit-learn's ``SGDRegressor`` on the
same matrix, and the peak memory of a fit above X::

    python -m benchmarks.sparse_epoch            # about a minute; --quick: smaller

The data are hashed-feature-like: n = 100000 rows, d = 2**18 columns, 262
stored entries a row (0.1% density) at uniformly hashed columns, values
+-1/sqrt(262) (unit rows, as ``HashingVectorizer`` with its signs and l2
norm makes them), float64, int32 indices; the target a planted ReLU with noise.

What each does per sample:

- ``SGDRegressor(max_iter=K, tol=None)``: for each sample of a shuffled pass,
  one sparse dot product with the weights and one sparse update of them
  (squared loss, its L2 penalty as a scale factor of the weights);
- ``ReLURegressor(batch_size=200, learning_rate=0.05, max_iter=K, tol=None)``,
  one in-process worker, its compiled loop of steps: 500 steps an epoch, each
  drawing 200 rows with replacement and sorting them; for each row a sparse
  dot product, and for each of its stored entries the gradient added to its
  column; each column's update applied when a later step first reads it
  (docs/user_guide.rst, "Sparse data"); the model the step-by-step path
  gives, bit for bit.

An epoch's seconds are the difference of a K-epoch and a 1-epoch fit over
K - 1 (what a fit adds per epoch, without its validation and start), medians
of interleaved rounds (``_timing``'s way: both sides see the same machine).
The peak is ``tracemalloc``'s during a 1-epoch fit, with X allocated before
(so above X), in d-vectors of float64 (2 MiB at d = 2**18); and, for the
package, the peak of its epoch's steps above what the fit held when they
began (the compiled loop's memory comes from Python's allocator, which
``tracemalloc`` sees).
"""

import argparse
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sklearn_relu import ReLURegressor

RESULTS = Path(__file__).resolve().parent / "results" / "sparse_epoch.md"

#: The target of the issue: an epoch at most as long as SGDRegressor's.
TARGET_RATIO = 1.0


def hashed_rows(n_samples, n_features, per_row, seed=0):
    """CSR rows of ``per_row`` uniformly hashed columns (duplicates summed),
    values +-1/sqrt(per_row), and a planted ReLU target with noise."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n_features, size=(n_samples, per_row), dtype=np.int32)
    indices.sort(axis=1)
    signs = rng.choice(np.array([-1.0, 1.0]), size=n_samples * per_row)
    X = sp.csr_matrix(
        (signs / np.sqrt(per_row), indices.ravel(),
         np.arange(0, n_samples * per_row + 1, per_row, dtype=np.int32)),
        shape=(n_samples, n_features),
    )
    X.sum_duplicates()
    w = rng.standard_normal(n_features)
    y = np.maximum(X @ w + 0.1, 0) + 0.1 * rng.standard_normal(n_samples)
    return X, y


def sklearn_fit(X, y):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDRegressor

    def fit(max_iter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return SGDRegressor(max_iter=max_iter, tol=None, random_state=0).fit(X, y)
    return fit


def relu_fit(X, y):
    def fit(max_iter):
        # A fixed step, as the suite's small section: "auto" measures the
        # curvature, passes over X outside the epochs.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ReLURegressor(batch_size=200, learning_rate=0.05, max_iter=max_iter,
                                 tol=None, random_state=0).fit(X, y)
    return fit


def epoch_seconds(contenders, rounds, epochs):
    """Median seconds an epoch and of a whole 1-epoch fit, per contender,
    each round timing every contender's two fits in turn."""
    samples = {name: ([], []) for name in contenders}
    for _ in range(rounds):
        for name, fit in contenders.items():
            times = []
            for max_iter in (epochs, 1):
                start = time.perf_counter()
                fit(max_iter)
                times.append(time.perf_counter() - start)
            samples[name][0].append((times[0] - times[1]) / (epochs - 1))
            samples[name][1].append(times[1])
    return {name: (float(np.median(a)), float(np.median(b)))
            for name, (a, b) in samples.items()}


def peak_above_X(fit):
    """``tracemalloc``'s peak bytes during ``fit(1)`` (X exists before), and
    during its epoch's steps above what the fit held when they began (0 where
    the fit runs no compiled steps)."""
    from sklearn_relu import _steps

    run_steps = _steps.run_steps
    earlier, steps = [0], [0]  # the peak before the steps; the steps' own

    def watched(*args):
        held, peak = tracemalloc.get_traced_memory()
        earlier[0] = max(earlier[0], peak)
        tracemalloc.reset_peak()
        try:
            return run_steps(*args)
        finally:
            steps[0] = max(steps[0], tracemalloc.get_traced_memory()[1] - held)

    _steps.run_steps = watched
    tracemalloc.start()
    try:
        fit(1)
        return max(earlier[0], tracemalloc.get_traced_memory()[1]), steps[0]
    finally:
        tracemalloc.stop()
        _steps.run_steps = run_steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 20000, 2 rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    n, d, per_row = (20_000 if args.quick else 100_000), 2**18, 262
    rounds = args.rounds or (2 if args.quick else 5)
    X, y = hashed_rows(n, d, per_row)
    contenders = {"SGDRegressor": sklearn_fit(X, y), "ReLURegressor": relu_fit(X, y)}
    for fit in contenders.values():  # warm: imports, the first pages
        fit(1)
    timings = epoch_seconds(contenders, rounds, args.epochs)
    vector = 8 * d
    peaks = {name: [p / vector for p in peak_above_X(fit)]
             for name, fit in contenders.items()}
    ours, theirs = timings["ReLURegressor"][0], timings["SGDRegressor"][0]
    ratio = ours / theirs
    lines = [
        f"# An epoch on CSR data (n = {n}, d = 2**18, {X.nnz / n:.0f} entries a row, "
        f"{X.nnz / (n * d):.2%} dense, {X.nnz * 12 / 2**20:.0f} MiB of X)",
        "",
        f"Medians of {rounds} interleaved rounds; an epoch from {args.epochs}-epoch "
        "minus 1-epoch fits.",
        "",
        "| | an epoch (s) | a whole 1-epoch fit (s) | peak above X, the fit "
        "(d-vectors) | the epoch's steps, above the fit's |",
        "|---|---|---|---|---|",
    ]
    for name, (epoch, whole) in timings.items():
        fit_peak, steps_peak = peaks[name]
        steps_text = f"{steps_peak:.1f}" if steps_peak else "-"
        lines.append(f"| {name} | {epoch:.3f} | {whole:.3f} | {fit_peak:.1f} | "
                     f"{steps_text} |")
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    lines += ["", f"ReLURegressor / SGDRegressor, an epoch: {ratio:.2f}x "
              f"(target at most {TARGET_RATIO:g}x): {verdict}"]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
