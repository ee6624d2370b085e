"""The second protocol: compressors whose workers' vectors are summed while
encoded (an allreduce), never decoded one by one."""

from abc import abstractmethod

from ._base import Compressor

__all__ = ["SummableCompressor"]


class SummableCompressor(Compressor):
    """A compressor whose workers' encoded vectors add up (an allreduce).

    Besides a :class:`Compressor`'s per-worker messages (which a subclass
    with :attr:`summed_only` does not have), a step of such a compressor
    runs, on every backend:

    1. when :attr:`needs_scale`, the workers agree on a scale: the MAX over
       them of :meth:`scale_statistic` on the first step, afterwards the one
       :meth:`next_scale` derived from the last step's sum;
    2. each worker encodes its vector on that scale (:meth:`encode`; a
       worker whose gradient failed sends :meth:`failed_summand` instead),
       and the backend checks each vector (:meth:`check_summand`) before
       adding them;
    3. the sum says whether a worker failed (:meth:`sum_failed`) or outgrew
       the scale (:meth:`needs_exact_scale`: the step is redone on the exact
       one), and :meth:`decode_sum` turns it into the sum of the gradients.

    Subclasses implement :meth:`encode`, :meth:`decode_sum`,
    :meth:`failed_summand` and :meth:`sum_failed`; the scale methods'
    defaults are those of a compressor that needs no scale.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.compression import Identity, IntSGD, QSGD, SummableCompressor
    >>> [isinstance(c, SummableCompressor) for c in (Identity(), IntSGD(), QSGD())]
    [True, True, False]
    >>> c = Identity()
    >>> parts = [c.encode(np.array([0.5, 1.0]), 0.0, 2), c.encode(np.array([1.0, 2.0]), 0.0, 2)]
    >>> c.decode_sum(parts[0] + parts[1], 0.0, 2)
    array([1.5, 3. ])
    """

    summable = True
    #: Whether the workers must agree on a scale before encoding (see the
    #: steps above); when False, the scale passed around is 0.0.
    needs_scale = False

    def scale_statistic(self, vector):
        """This worker's share of the exact scale, whose MAX over the workers
        is agreed on: 0.0 for a compressor that needs no scale."""
        return 0.0

    @abstractmethod
    def encode(self, vector, scale, n_workers, random_state=None):
        """The 1-D array this worker adds to the sum of ``n_workers`` such
        arrays, ``vector`` encoded on the agreed ``scale``."""

    @abstractmethod
    def decode_sum(self, total, scale, n_workers, dtype=None):
        """The sum of the workers' vectors from the sum of their encodings,
        in ``dtype`` (the model's)."""

    @abstractmethod
    def failed_summand(self, n_values, dtype=None):
        """What a worker whose gradient failed adds instead of its encoding,
        so that every worker sees the failure in the sum (:meth:`sum_failed`)
        instead of waiting for it."""

    @abstractmethod
    def sum_failed(self, total):
        """Whether some worker's gradient failed this step."""

    def check_summand(self, part, n_summands, sender="a worker"):
        """Raise :class:`MessageError` unless ``part`` is a vector
        :meth:`encode` can make for a sum of ``n_summands``; ``sender`` names
        its worker in the message. Nothing to check by default (a float
        vector adds up whatever its values)."""

    def needs_exact_scale(self, total):
        """Whether a worker's vector outgrew the agreed scale, so that the
        step must be redone on the exact one: never, by default."""
        return False

    def next_scale(self, total, scale):
        """The scale the next step uses, the same on every worker, derived
        from this step's sum; None agrees on the exact one afresh (the
        default)."""
        return None
