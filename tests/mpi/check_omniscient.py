"""Run under mpiexec: attacks that read the honest workers' vectors give every
rank the in-process model in both topologies that decode messages one by one
(in allgather every rank decodes every message and crafts the same attack; in
master-worker rank 0 does), the same bytes as honest messages, and
``topology="allreduce"`` refuses them.

Assertions hold for any number of ranks K >= 2: worker 0 is Byzantine; the
rule is the geometric median from K = 3 workers on, the mean below.
"""

import sys
import warnings

from _checks import assert_matches_inprocess
from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.backends import MPIBackend

comm = MPI.COMM_WORLD
size = comm.Get_size()
X, y = make_relu_regression(n_samples=400, n_features=12, noise=0.1, random_state=1)
rule = "geometric_median" if size >= 3 else "mean"


def fit(backend, **params):
    kw = dict(n_workers=size, batch_size=40, max_iter=1, tol=None, random_state=3,
              aggregation=rule, n_byzantine=1)
    if rule == "mean":  # the attacked start's statistics would make "auto" fail
        kw.update(init="zeros", learning_rate=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mean's: no defence
        return ReLURegressor(backend=backend, **{**kw, **params}).fit(X, y)


for attack in ["alie", "optimal_ipm", "mimic", "label_flip"]:
    assert_matches_inprocess(fit, fit("inprocess", attack=attack), attack, attack=attack)

try:
    fit(MPIBackend(topology="allreduce"), attack="alie", aggregation="mean")
except ValueError as error:
    assert "sums the vectors while encoded" in str(error), error
else:
    raise AssertionError("allreduce accepted an omniscient attack")

print(f"ok: {size} ranks", file=sys.stderr)
