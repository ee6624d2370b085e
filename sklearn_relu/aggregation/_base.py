"""The aggregator interface."""

from abc import ABC, abstractmethod

__all__ = ["Aggregator"]


class Aggregator(ABC):
    """Combines the workers' decoded vectors (in worker order) into the step
    direction.

    Both aggregators here are functions of the workers' sum, which a backend
    may have computed while the vectors were compressed (an allreduce): they
    implement :meth:`from_sum`, and :meth:`aggregate` adds the vectors in
    worker order first.
    """

    #: Whether the direction is a sign (``+1`` or ``-1`` a coordinate), so that
    #: a master can send it back as one bit a coordinate.
    returns_signs = False

    def aggregate(self, vectors, compressor):
        """The direction from the workers' decoded vectors, in worker order."""
        total = vectors[0].copy()
        for vector in vectors[1:]:
            total += vector
        return self.from_sum(total, len(vectors), compressor)

    @abstractmethod
    def from_sum(self, total, n_workers, compressor):
        """The direction from the sum of ``n_workers`` decoded vectors."""

    def get_state(self):
        """What the aggregator keeps from step to step (a 1-D float64 array), or
        None when it keeps nothing, as the aggregators here. A checkpoint saves
        it and a resumed fit hands it to :meth:`set_state`."""
        return None

    def set_state(self, state):
        """Continue from ``state``, which :meth:`get_state` returned."""

    def sign_units(self, compressor):
        """Whether the direction is a unit per coordinate (the sign schedule's
        business) rather than a gradient."""
        return self.returns_signs or compressor.sign_units

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))
