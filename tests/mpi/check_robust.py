"""Run under mpiexec: a robust rule with Byzantine workers gives every rank the
in-process model, in both topologies that decode messages one by one, and
``topology="allreduce"`` refuses a rule that needs every message on every rank.

Assertions hold for any number of ranks K: every rank fits with K workers and
compares with the in-process fit on the same data with K workers. The first
``(K - 1) // 2`` ranks are Byzantine (as many as the rules withstand: none at
K = 2, where the mean runs with one, warning). The start's statistics, the
losses and the memory of BGMD are combined by the rule on every rank alike.
"""

import sys
import warnings

from _checks import assert_matches_inprocess
from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu.backends import MPIBackend

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
X, y = make_relu_regression(n_samples=400, n_features=12, noise=0.1, random_state=1)
f = (size - 1) // 2

CASES = [
    dict(aggregation="geometric_median", n_byzantine=f, attack="gaussian"),
    dict(aggregation="bgmd", n_byzantine=f, attack="scaled"),
    dict(aggregation="krum", n_byzantine=max(f - 1, 0) if size < 5 else 1,
         attack="sign_flip"),
    dict(aggregation="mean", n_byzantine=1 if size > 1 else 0, attack="scaled"),
]


def fit(backend, **params):
    kw = dict(n_workers=size, batch_size=40, max_iter=1, tol=None, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mean's: no defence
        return ReLURegressor(backend=backend, **{**kw, **params}).fit(X, y)


for case in CASES:
    if case["aggregation"] == "krum" and size < 3:
        continue  # Krum needs three workers
    if case["aggregation"] == "mean":
        # The attack's statistics would make the spectral start and "auto"
        # fail (a negative total weight, a clear error): start from zero.
        case = {**case, "learning_rate": 1e-3, "init": "zeros"}
    assert_matches_inprocess(fit, fit("inprocess", **case), str(case), **case)

try:
    fit(MPIBackend(topology="allreduce"), aggregation="median")
except ValueError as error:
    assert "needs each of them: use topology='allgather'" in str(error), error
else:
    raise AssertionError("allreduce accepted a robust rule")

print(f"ok: {size} ranks", file=sys.stderr)
