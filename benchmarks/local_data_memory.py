"""Peak memory of a rank under ``MPIBackend(data="local")``, against its share of X.

Run under MPI (4 ranks is the target's setting)::

    .venv/bin/mpiexec -n 4 .venv/bin/python -m mpi4py benchmarks/local_data_memory.py

Rank 0 writes a planted data set as ``.npy`` files (X: 200000 x 100 float64,
160 MB); then every rank does what ``python -m sklearn_relu fit X.npy --target
y.npy --data local`` does: memory-maps the files, keeps only its own shard's
rows and fits. Each rank reports its resident memory before loading (the
interpreter with NumPy, scikit-learn and mpi4py imported), its peak during the
fit (``VmHWM``), and the ratio of the difference to its share of X. Pages of a
memory-mapped file count as resident once read, so this is every byte of X the
rank touched. Target: at most 1.3x the share (a constant of 16 MiB for the batch buffers,
the thread pool and the fit's bookkeeping would be allowed on top; the ratio
printed does not subtract it).
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._cli import load_data
from sklearn_relu.backends import MPIBackend

CONSTANT_MIB = 16
TARGET_RATIO = 1.3


def status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak():
    # Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS.
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=200_000)
    parser.add_argument("--n-features", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    directory = None
    if rank == 0:
        directory = args.dir or Path(tempfile.mkdtemp(prefix="relu-local-"))
        X, y = make_relu_regression(
            n_samples=args.n_samples, n_features=args.n_features, random_state=0
        )
        np.save(directory / "X.npy", X)
        np.save(directory / "y.npy", y)
        del X, y
    directory = comm.bcast(directory, root=0)
    comm.Barrier()
    reset_peak()
    baseline = status_kib("VmRSS")
    X, y, _ = load_data(directory / "X.npy", directory / "y.npy", shard=(rank, size))
    est = ReLURegressor(
        solver="qsgd", bits=8, max_iter=3, tol=None, random_state=0,
        backend=MPIBackend(data="local"),
    ).fit(X, y)
    peak = status_kib("VmHWM")
    share = X.nbytes
    above = (peak - baseline) * 1024
    ratio = above / share
    rows = comm.gather((rank, X.shape[0], share, baseline, peak, above, ratio), root=0)
    if rank == 0:
        print(f"data='local', {size} ranks, X {args.n_samples} x {args.n_features} "
              f"float64 ({args.n_samples * args.n_features * 8 / 1e6:.0f} MB), "
              f"score {est.score(X, y):.6f} on rank 0's rows")
        print("| rank | rows | share of X (MB) | RSS before (MB) | peak (MB) "
              "| peak above before (MB) | above / share |")
        print("|---|---|---|---|---|---|---|")
        for r, n, sh, base, pk, ab, ratio_r in rows:
            print(f"| {r} | {n} | {sh / 1e6:.1f} | {base / 1024:.1f} | {pk / 1024:.1f} "
                  f"| {ab / 1e6:.1f} | {ratio_r:.2f} |")
        worst = max(r[-1] for r in rows)
        verdict = "PASS" if worst <= TARGET_RATIO else "FAIL"
        print(f"worst rank: {worst:.2f}x its share; target <= {TARGET_RATIO}x "
              f"(+{CONSTANT_MIB} MiB allowed, not needed): {verdict}")
        if args.dir is None:
            for name in ("X.npy", "y.npy"):
                os.unlink(directory / name)
            directory.rmdir()


if __name__ == "__main__":
    main()
