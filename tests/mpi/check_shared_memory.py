"""Run under mpiexec: MPIBackend(wait="sleep"), the shared-memory exchange.

Assertions hold for any number of ranks K (all on one host, as mpiexec -n K
starts them here):
- ``SharedExchange.allgather`` gives what MPI's ``allgather`` gives (the naive
  reference), exchange after exchange, with messages of every size, empty
  ones, failed ranks and messages longer than a slot;
- every topology, and data held by rank 0 or by each rank, gives the
  in-process model bit for bit, with the bytes that
  MPI's collectives count (``wait="busy"``); SGD over the allreduce topology too (summed in rank order here,
  where MPI's ``Allreduce`` may add in another order);
- a rank whose gradient fails makes every rank raise;
- a communicator's windows are reused whatever the number of fits and
  backends, kept while a fit may use them (a fit in a callback on wider
  data), and released with the communicator; ranks given different data get
  the clear error; an interrupted wait makes the exchange refuse further use;
- ``wait="auto"`` never sleeps (it yields exactly when the ranks on the host
  outnumber its cores); without the compiled barrier "sleep" is a clear error
  and "auto" is unchanged.
"""

import sys

import numpy as np
from _injected import gradients_fail
from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._worker import shard_bounds
from sklearn_relu.backends import MPIBackend, _mpi, _shared_memory
from sklearn_relu.backends._mpi import RemoteWorkerError
from sklearn_relu.backends._shared_memory import SharedExchange

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()

# -- the exchange against MPI's allgather ---------------------------------------
rng = np.random.default_rng(rank)
exchange = SharedExchange(comm, MPI, capacity=100, spin_seconds=1e-4)
assert exchange.capacity == 128  # whole cache lines
for round_ in range(40):
    # Sizes from empty to beyond the slot (every 7th round one rank's message
    # does not fit); every 5th round the last rank reports a failure (-1).
    n_bytes = int(rng.integers(0, 129))
    if round_ % 7 == 3 and rank == round_ % size:
        n_bytes = 1000
    message = rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    value = -1 if (round_ % 5 == 4 and rank == size - 1) else n_bytes
    values, received = exchange.allgather(value, message if value >= 0 else b"")
    want_values = comm.allgather(value)
    want_bytes = b"".join(comm.allgather(message if value >= 0 else b""))
    assert values.tolist() == want_values, (round_, values, want_values)
    assert received.tobytes() == want_bytes, round_
exchange.free()


def assert_refused(exchange, why):
    """``exchange`` refuses to be used, saying ``why``."""
    try:
        exchange.allgather(0)
    except RuntimeError as exc:
        assert why in str(exc), exc
    else:
        raise AssertionError(f"an exchange that was {why} was used")


# -- fits: the in-process model, bit for bit, and the same bytes ---------------
X, y = make_relu_regression(n_samples=240, n_features=12, noise=0.1, random_state=1)


def fit(backend, **params):
    kw = dict(n_workers=size, batch_size=24, max_iter=4, tol=None, random_state=3)
    return ReLURegressor(backend=backend, **{**kw, **params})


for solver, topology, params in (
    ("sgd", "allgather", {}),
    ("sgd", "allreduce", {}),
    ("qsgd", "allgather", dict(bits=4)),
    ("qsgd", "master-worker", dict(bits=4)),
    ("intsgd", "allreduce", {}),
    ("signum", "master-worker", dict(aggregation="majority")),
    ("qsgd", "allgather", dict(aggregation="median", n_ensemble=2,
                               early_stopping=True)),
):
    reference = fit("inprocess", solver=solver, **params).fit(X, y)
    backend = MPIBackend(topology=topology, wait="sleep")
    est = fit(backend, solver=solver, **params).fit(X, y)
    assert backend._waiting == "sleep"
    np.testing.assert_array_equal(est.coef_, reference.coef_)
    assert est.intercept_ == reference.intercept_
    assert est.loss_curve_ == reference.loss_curve_
    # The bytes counted are those of MPI's collectives (an allreduce's vectors
    # have no header, unlike in-process messages).
    busy = fit(MPIBackend(topology=topology, wait="busy"), solver=solver, **params)
    got, want = est.comm_record_, busy.fit(X, y).comm_record_
    fields = ("n_messages", "bytes_sent", "float64_bytes", "control_bytes",
              "exact_scale_rounds")
    assert [getattr(got, f) for f in fields] == [getattr(want, f) for f in fields], (
        solver, topology, got, want
    )
    # A second fit reuses the window: the same model again.
    again = fit(backend, solver=solver, **params).fit(X, y)
    np.testing.assert_array_equal(again.coef_, est.coef_)

# Rows held by rank 0 only, or each rank's own: the same exchange, the same
# model (data="local" with the shards data="all" makes).
reference = fit("inprocess", solver="qsgd", bits=4).fit(X, y)
rooted = fit(MPIBackend(data="root", wait="sleep"), solver="qsgd", bits=4)
rooted.fit(X if rank == 0 else None, y if rank == 0 else None)
np.testing.assert_array_equal(rooted.coef_, reference.coef_)
start, stop = shard_bounds(X.shape[0], size, rank)
local = fit(MPIBackend(data="local", wait="sleep"), solver="qsgd", bits=4)
local.fit(X[start:stop], y[start:stop])
np.testing.assert_array_equal(local.coef_, reference.coef_)

# The exchanges of a communicator, kept across fits and backends
# (backend="mpi" makes a new backend every fit), one more for wider data.
def exchanges_of(communicator):
    return list(communicator.Get_attr(_shared_memory._KEYVAL))


windows = exchanges_of(comm)
assert len(windows) == 1, windows
for _ in range(3):
    fit(MPIBackend(wait="sleep")).fit(X, y)
assert exchanges_of(comm) == windows
X_wide, y_wide = make_relu_regression(n_samples=60, n_features=40, random_state=2)
reference = fit("inprocess").fit(X_wide, y_wide)
np.testing.assert_array_equal(
    fit(MPIBackend(wait="sleep")).fit(X_wide, y_wide).coef_, reference.coef_
)
old, wider = exchanges_of(comm)
assert old is windows[0] and wider.capacity >= max(8 * 41 + 64, 2 * old.capacity)

# A fit inside a fit's callback, on wider data than any before: the outer fit
# keeps its exchange (not freed under it), and both fits are the in-process
# ones.
X_wider, y_wider = make_relu_regression(n_samples=60, n_features=400, random_state=4)
inner_reference = fit("inprocess", max_iter=1).fit(X_wider, y_wider)
inner_models = []


def fit_inside(info):
    if info.step == 2:
        inner = fit(MPIBackend(wait="sleep"), max_iter=1).fit(X_wider, y_wider)
        inner_models.append(inner.coef_)


reference = fit("inprocess").fit(X, y)
outer = fit(MPIBackend(wait="sleep"), callback=fit_inside).fit(X, y)
np.testing.assert_array_equal(outer.coef_, reference.coef_)
np.testing.assert_array_equal(inner_models[0], inner_reference.coef_)
assert len(exchanges_of(comm)) == 3

# A communicator's exchanges are released with it.
mine = comm.Dup()
fit(MPIBackend(mine, wait="sleep")).fit(X, y)
(window,) = exchanges_of(mine)
mine.Free()
assert_refused(window, "freed")

# Ranks given different data: the clear error on every rank, no window made.
X_rank = X if rank == 0 else X[:, :-1]
try:
    fit(MPIBackend(wait="sleep")).fit(X_rank, y)
except ValueError as exc:
    assert "given different data" in str(exc) or "disagree" in str(exc), exc
else:
    if size > 1:
        raise AssertionError("ranks with different data were accepted")

# A wait interrupted (Ctrl-C) leaves this rank out of step: the exchange then
# refuses to be used rather than exchanging stale slots or hanging.
mine = comm.Dup()
exchange = SharedExchange(mine, MPI, capacity=64, spin_seconds=0.0)


class Interrupted:
    CONTROL_BYTES = 128

    @staticmethod
    def arrive_and_wait(*args):
        raise KeyboardInterrupt


built, exchange._futex = exchange._futex, Interrupted
try:
    exchange.allgather(0)
except KeyboardInterrupt:
    pass
exchange._futex = built
assert_refused(exchange, "interrupted")
exchange.free()
mine.Free()

# -- a rank whose gradient fails: every rank raises, none waits forever --------
for solver, topology in (("qsgd", "allgather"), ("sgd", "allreduce"),
                         ("intsgd", "allreduce")):
    est = fit(MPIBackend(topology=topology, wait="sleep"), solver=solver, max_iter=2)
    try:
        with gradients_fail(3, here=rank == size - 1):
            est.fit(X, y)
    except ArithmeticError:
        assert rank == size - 1
    except RemoteWorkerError as exc:
        assert rank < size - 1, exc
        assert "another MPI rank failed" in str(exc) or "not finite" in str(
            exc
        ) or "failed during the fit" in str(exc), exc
    else:
        raise AssertionError(f"a failing rank went unnoticed ({solver})")
    comm.Barrier()

# -- which policy "auto" picks: MPI's own waiting, never the shared memory --
backend = MPIBackend()
fit(backend).fit(X, y)
ranks_here, cores = backend._host_layout()
crowded = ranks_here > cores
assert backend._waiting == ("yield" if crowded else "busy"), (
    backend._waiting, ranks_here, cores
)
assert backend._exchange is None

# Without the compiled barrier: "sleep" says what is missing, "auto" is the same.
built = _mpi.barrier_built
_mpi.barrier_built = lambda: False
try:
    try:
        fit(MPIBackend(wait="sleep")).fit(X, y)
    except ImportError as exc:
        assert "compiled barrier" in str(exc), exc
    else:
        raise AssertionError("wait='sleep' without the barrier was accepted")
    backend = MPIBackend()
    fit(backend).fit(X, y)
    assert backend._waiting == ("yield" if crowded else "busy"), backend._waiting
finally:
    _mpi.barrier_built = built

comm.Barrier()
if rank == 0:
    print(f"ok: {size} ranks", file=sys.stderr)
