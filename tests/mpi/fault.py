"""Run under mpiexec: one rank fails mid-fit; the whole job must end, not hang.

Usage: fault.py MODE [TOPOLOGY | CLI ARGS...]
  raise    the last rank raises in its third gradient computation
  kill     the last rank kills itself (SIGKILL) in its third gradient computation
  corrupt  the last rank sends a truncated third message
  short    the last rank's third message is valid but of one value, not d
  cli      like kill, inside ``python -m sklearn_relu fit CLI ARGS...``
  cli-load the last rank cannot read the data file, inside the command line
  bad-data the last rank's X has a NaN and every rank catches its error: all
           ranks must raise (and then exit 0) instead of waiting for the last
"""

import os
import signal
import sys

from mpi4py import MPI

from sklearn_relu import ReLURegressor, _cli, make_relu_regression
from sklearn_relu._cli import main
from sklearn_relu._worker import ShardWorker
from sklearn_relu.backends import MPIBackend

mode = sys.argv[1]
comm = MPI.COMM_WORLD
if comm.Get_rank() == comm.Get_size() - 1:
    original = ShardWorker.gradient_message
    calls = []

    def failing_gradient_message(self, params):
        calls.append(1)
        if len(calls) == 3:
            if mode == "raise":
                raise RuntimeError("injected failure on the last rank")
            if mode == "corrupt":
                return original(self, params)[:-1]
            if mode == "short":
                return self.compressor.compress(params[:1])
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, params)

    ShardWorker.gradient_message = failing_gradient_message

    def unreadable(*args, **kwargs):
        raise OSError("injected: the last rank cannot read the data")

    if mode == "cli-load":
        _cli._data.read_data = unreadable  # what the fit command reads its file with

if mode.startswith("cli"):
    sys.exit(main(["fit", *sys.argv[2:]]))
if mode == "bad-data":
    X, y = make_relu_regression(n_samples=200, n_features=6, random_state=0)
    if comm.Get_rank() == comm.Get_size() - 1:
        X = X.copy()
        X[0, 0] = float("nan")
    try:
        ReLURegressor(backend=MPIBackend(), n_workers=None, random_state=0).fit(X, y)
    except Exception as exc:
        print(f"rank {comm.Get_rank()} caught {type(exc).__name__}: {exc}", flush=True)
    sys.exit(0)
X, y = make_relu_regression(n_samples=200, n_features=6, random_state=0)
topology = sys.argv[2] if len(sys.argv) > 2 else "allgather"
ReLURegressor(
    backend=MPIBackend(topology=topology), n_workers=None, batch_size=20, random_state=0
).fit(X, y)
