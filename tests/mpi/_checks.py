"""Assertions the MPI check scripts share (imported from beside them: ``python
-m mpi4py`` puts the script's folder first on ``sys.path``)."""

import numpy as np
from mpi4py import MPI


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
