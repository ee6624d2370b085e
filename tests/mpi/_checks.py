"""Assertions the MPI check scripts share (imported from beside them: ``python
-m mpi4py`` puts the script's folder first on ``sys.path``)."""

import numpy as np
from _injected import gradients_fail
from mpi4py import MPI

from sklearn_relu.backends import MPIBackend
from sklearn_relu.backends._mpi import RemoteWorkerError


def same_on_every_rank(array, comm=MPI.COMM_WORLD):
    """Every rank of ``comm`` holds ``array``, to the last bit."""
    for other in comm.allgather(array):
        np.testing.assert_array_equal(other, array)


def assert_refused(fit, X, y, cases):
    """Each ``(backend, solver, match)``: ``fit(backend, solver=solver).fit(X,
    y)`` raises a ValueError whose message contains ``match``."""
    for backend, solver, match in cases:
        try:
            fit(backend, solver=solver).fit(X, y)
        except ValueError as exc:
            assert match in str(exc), exc
        else:
            raise AssertionError(f"{solver} over {backend.topology} was accepted")


#: SGD, and IntSGD failing in its first step (the exact scale's MAX) and in a
#: later one (the integers alone).
FAILING_STEPS = (("sgd", 0), ("intsgd", 0), ("intsgd", 3))


def assert_a_failing_rank_fails_every_rank(fit, X, y, topology, remote_error_ok=None,
                                            comm=MPI.COMM_WORLD):
    """For each of :data:`FAILING_STEPS`: when the last rank's gradient
    fails, that rank raises ArithmeticError and the others RemoteWorkerError
    (no hang); ``remote_error_ok(exc)`` (default: the rank is not the last)
    judges each RemoteWorkerError. The ranks meet after each fit."""
    rank, size = comm.Get_rank(), comm.Get_size()
    if remote_error_ok is None:
        def remote_error_ok(exc):
            return rank < size - 1
    for solver, failing_draw in FAILING_STEPS:
        est = fit(MPIBackend(topology=topology), solver=solver, max_iter=2)
        try:
            with gradients_fail(failing_draw, here=rank == size - 1):
                est.fit(X, y)
        except ArithmeticError:
            assert rank == size - 1
        except RemoteWorkerError as exc:
            assert remote_error_ok(exc), exc
        else:
            raise AssertionError(f"a failing rank went unnoticed ({topology})")
        comm.Barrier()


def assert_matches_inprocess(fit, reference, label, comm=MPI.COMM_WORLD, **params):
    """``fit(MPIBackend(topology=...), **params)`` on allgather and
    master-worker ends with ``reference``'s model (the in-process fit), its
    step and its messages and bytes, and with the same model on every rank."""
    for topology in ("allgather", "master-worker"):
        est = fit(MPIBackend(topology=topology), **params)
        np.testing.assert_array_equal(est.coef_, reference.coef_, err_msg=label)
        assert est.intercept_ == reference.intercept_, label
        assert est.learning_rate_ == reference.learning_rate_, label
        got, want = est.comm_record_, reference.comm_record_
        assert (got.n_messages, got.bytes_sent) == (want.n_messages, want.bytes_sent)
    same_on_every_rank(est.coef_, comm)
