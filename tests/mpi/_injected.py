"""Faults the MPI check scripts inject (imported from beside them: ``python -m
mpi4py`` puts the script's folder first on ``sys.path``)."""

import contextlib

from sklearn_relu._worker import ShardWorker


@contextlib.contextmanager
def gradients_fail(from_draw, here):
    """Where ``here`` is true, every batch gradient a worker draws from the
    ``from_draw``-th on (counting from 0) raises ``ArithmeticError``; elsewhere
    nothing changes. The worker's own method comes back afterwards."""
    if not here:
        yield
        return
    original = ShardWorker._draw_gradient
    draws = iter(range(10**9))

    def failing(self, params):
        if next(draws) >= from_draw:
            raise ArithmeticError("injected failure on the last rank")
        return original(self, params)

    ShardWorker._draw_gradient = failing
    try:
        yield
    finally:
        ShardWorker._draw_gradient = original
