"""Run under mpiexec: the "multitree" and "hierarchical" topologies.

Assertions hold for any number of ranks K, and for any grouping of the ranks
into hosts (``MPIR_CVAR_NUM_CLIQUES`` splits one machine's ranks into blocks
that MPICH treats as separate hosts):
- MultiTree on one switch, and on a 2x2 torus (K = 4) or a K-node mesh: SGD
  and IntSGD give the in-process model told the same schedule, bit for bit,
  on every rank;
- hierarchical: the hosts are MPI's shared-memory split, and the model is
  the in-process one told that grouping, bit for bit, for SGD and IntSGD;
  IntSGD encodes one vector per host;
- a rank whose gradient fails makes every rank raise, with either topology;
- a network whose size is not the number of ranks is a clear error.
"""

import sys

import numpy as np
from _checks import assert_a_failing_rank_fails_every_rank, assert_refused, same_on_every_rank
from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.backends import InProcessBackend, MPIBackend
from sklearn_relu.collectives import hierarchy, multitree_schedule
from sklearn_relu.compression._intsgd import TRAILER_LENGTH

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
X, y, w_star = make_relu_regression(n_samples=600, n_features=13, coef=True, random_state=1)


def fit(backend, **params):
    kw = dict(batch_size=24, max_iter=4, tol=None, random_state=3)
    return ReLURegressor(backend=backend, **{**kw, **params})


def assert_same_fit(est, reference):
    np.testing.assert_array_equal(est.coef_, reference.coef_)
    assert est.intercept_ == reference.intercept_
    assert est.loss_curve_ == reference.loss_curve_
    got, want = est.comm_record_, reference.comm_record_
    assert (got.n_messages, got.bytes_sent) == (want.n_messages, want.bytes_sent)
    same_on_every_rank(est.coef_)


networks = [None, f"mesh:1x{size}"] + (["torus:2x2"] if size == 4 else [])
for network in networks:
    schedule = multitree_schedule(f"switch:{size}" if network is None else network)
    for solver in ("sgd", "intsgd"):
        est = fit(MPIBackend(topology="multitree", network=network), solver=solver)
        est.fit(X, y)
        reference = fit(InProcessBackend(reduction=schedule), solver=solver, n_workers=size)
        assert_same_fit(est, reference.fit(X, y))

# The hosts as MPI sees them: the ranks that share memory.
host = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
first = host.bcast(rank, root=0)
host.Free()
groups = {}
for member, leader in enumerate(comm.allgather(first)):
    groups.setdefault(leader, []).append(member)
hosts = [groups[leader] for leader in sorted(groups)]
for solver in ("sgd", "intsgd"):
    for wait in ("busy", "yield"):
        est = fit(MPIBackend(topology="hierarchical", wait=wait), solver=solver).fit(X, y)
        reference = fit(
            InProcessBackend(reduction=hierarchy(hosts)), solver=solver, n_workers=size
        ).fit(X, y)
        assert_same_fit(est, reference)
# IntSGD sends one vector per host a step (and twice in a redone step).
record = est.comm_record_
part = (X.shape[1] + 1 + TRAILER_LENGTH)
exact = record.exact_scale_rounds
assert record.n_messages == est.t_ * len(hosts)
assert record.bytes_sent == len(hosts) * (est.t_ * part + exact * 8 + (exact - 1) * part)
converged = fit(MPIBackend(topology="hierarchical"), solver="intsgd", max_iter=200,
                tol=1e-4, fit_intercept=False).fit(X, y)
same_on_every_rank(converged.coef_)
assert np.linalg.norm(converged.coef_ - w_star) / np.linalg.norm(w_star) < 1e-6

# A rank whose gradient fails: every rank raises (no hang), on either topology.
for topology in ("multitree", "hierarchical"):
    assert_a_failing_rank_fails_every_rank(fit, X, y, topology)

# A network of another size, and a compressor that cannot be summed.
assert_refused(fit, X, y, (
    (MPIBackend(topology="multitree", network=f"switch:{size + 1}"), "sgd",
     f"{size + 1} compute nodes, but there are {size} ranks"),
    (MPIBackend(topology="multitree"), "qsgd", "cannot be summed"),
    (MPIBackend(topology="hierarchical"), "qsgd", "cannot be summed"),
))

comm.Barrier()
if rank == 0:
    print(f"ok: {size} ranks, hosts {hosts}", file=sys.stderr)
