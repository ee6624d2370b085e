"""IntSGD: gradients rounded to integers on a shared scale, summed as integers.

After Mishchenko et al., "IntSGD: adaptive floatless compression of stochastic
gradients" (ICLR 2022). Every worker divides its gradient by the same scale
``alpha`` and rounds each coordinate stochastically to an integer; the workers'
integer vectors are then summed by an integer allreduce (MPI's ``Allreduce``
on ``int8``/``int16``/``int32`` buffers), and the sum times ``alpha`` is the
gradient. Integer sums are exact in any order, so the model is the same, to the
last bit, whatever order MPI sums in and on every backend.

The scale is agreed each step by one float MAX over the workers of
``max_i |g_i|`` (8 bytes a worker), and set so that every rounded value lies in
``[-s, s]`` with ``s = floor(T / W)``, ``T`` the wire type's largest value and
``W`` the number of workers: the sum of ``W`` such values is at most ``T`` in
magnitude, so it can never overflow, and nothing is ever clipped.
"""

import math
import numbers

import numpy as np

from ._base import Compressor

__all__ = ["IntSGD"]

_WIRE_TYPES = {8: np.int8, 16: np.int16, 32: np.int32}


class IntSGD(Compressor):
    """Unbiased integer rounding on a shared scale; messages sum as integers.

    A worker with gradient ``g`` sends the integers
    ``q_i = floor(g_i / alpha + u_i)``, ``u_i`` uniform on ``[0, 1)``, where
    ``alpha = M / s``, ``M`` the largest ``|g_i|`` over all workers and
    ``s = floor((2**(bits-1) - 1) / n_workers)``. So ``|q_i| <= s``,
    ``E[alpha q_i] = g_i`` (unbiased), and the variance of a coordinate is
    ``alpha^2 f (1 - f)`` with ``f`` the fractional part of ``g_i / alpha``:
    at most ``alpha^2 / 4`` and at most ``alpha |g_i|``, hence

    ``E||alpha q - g||^2 <= min(d alpha^2 / 4, alpha ||g||_1)
    <= min(d / (4 s^2), sqrt(d) / s) * M^2``.

    The integers of all workers are added exactly (in the wire type: the sum
    cannot overflow) and decoded once, ``alpha * sum_w q_w``.

    Parameters
    ----------
    bits : {8, 16, 32}, default=8
        The integer type on the wire: ``int8``, ``int16`` or ``int32``. With
        ``bits=8`` at most 127 workers can sum without overflow (``s >= 1``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.compression import IntSGD
    >>> c = IntSGD(bits=8)
    >>> c.levels(n_workers=4)   # each worker's integers lie in [-31, 31]
    31
    >>> g = [np.array([0.5, -1.0, 0.25]), np.array([1.0, 0.0, -0.5])]
    >>> scale = max(c.scale_statistic(v) for v in g)      # the MAX over workers
    >>> parts = [c.encode(v, scale, 2, random_state=0) for v in g]
    >>> parts[0].dtype, parts[0].nbytes                   # one int8 a coordinate
    (dtype('int8'), 3)
    >>> total = parts[0] + parts[1]                       # what Allreduce(SUM) does
    >>> c.decode_sum(total, scale, 2).round(3)  # unbiased for g0 + g1 = [1.5, -1, -0.25]
    array([ 1.492, -1.   , -0.238])
    """

    #: Messages are arrays that are summed while compressed (an allreduce).
    summable = True
    #: Workers must agree on a scale each step (one float MAX).
    needs_scale = True
    #: Only summed messages exist: each worker's integers mean nothing alone.
    summed_only = True

    def __init__(self, bits=8):
        if isinstance(bits, bool) or bits not in _WIRE_TYPES:
            raise ValueError(
                f"IntSGD bits must be 8, 16 or 32 (int8, int16, int32 on the wire), "
                f"got {bits!r}"
            )
        self.bits = int(bits)

    @property
    def wire_dtype(self):
        """The integer type the workers' vectors travel and are summed in."""
        return np.dtype(_WIRE_TYPES[self.bits])

    def max_workers(self):
        """The most workers whose integers can be summed without overflow."""
        return int(np.iinfo(self.wire_dtype).max)

    def levels(self, n_workers):
        """``s = floor(T / n_workers)``: each worker's integers lie in ``[-s, s]``."""
        if not isinstance(n_workers, numbers.Integral) or n_workers < 1:
            raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
        s = self.max_workers() // int(n_workers)
        if s < 1:
            raise ValueError(
                f"IntSGD(bits={self.bits}) can sum at most {self.max_workers()} "
                f"workers' {self.wire_dtype} vectors without overflow, but "
                f"n_workers={n_workers}: use bits="
                f"{16 if self.bits == 8 else 32} or fewer workers"
            )
        return s

    def variance_factor(self, n_values, n_workers=1):
        """The relative variance ``E||Q(g) - g||^2 / ||g||^2`` that
        ``learning_rate="auto"`` plans for.

        The worst case, ``min(d / (4 s^2), sqrt(d) / s)`` (all of ``||g||`` in
        one coordinate, ``M = ||g||``), is far from what gradients do. For a
        vector whose ``d`` coordinates spread like Gaussian noise of scale
        ``sigma`` (as a worker's share of a mini-batch gradient does), the
        largest of the ``W`` workers' ``d`` entries is about
        ``M = sigma sqrt(2 ln(2 d W))``, and the two per-coordinate bounds
        ``alpha^2 / 4`` and ``alpha |g_i|`` give
        ``min(ln(2 d W) / (2 s^2), sqrt(2 ln(2 d W)) sqrt(2 / pi) / s)``.
        This returns that, capped by the worst case: 0.12 at ``d = 4000``,
        ``W = 16``, 8 bits. A gradient far spikier than Gaussian noise gets a
        step up to ``(1 + worst) / (1 + typical)`` times larger than planned.
        """
        d, s = max(int(n_values), 1), self.levels(n_workers)
        worst = min(d / (4 * s**2), math.sqrt(d) / s)
        spread = 2 * math.log(2 * d * n_workers)
        typical = min(spread / (4 * s**2), math.sqrt(spread) * math.sqrt(2 / math.pi) / s)
        return min(worst, typical)

    def scale_statistic(self, vector):
        """This worker's ``max_i |g_i|``; the scale is the MAX over workers."""
        vector = np.asarray(vector)
        if vector.size == 0:
            return 0.0
        return float(np.max(np.abs(vector)))

    def encode(self, vector, scale, n_workers, random_state=None):
        """Round ``vector / alpha`` stochastically to integers in ``[-s, s]``.

        Parameters
        ----------
        vector : ndarray of shape (d,)
        scale : float
            ``M``, the MAX of :meth:`scale_statistic` over all workers.
        n_workers : int
            Workers whose integers will be summed.
        random_state : int, numpy.random.Generator or None

        Returns
        -------
        ndarray of :attr:`wire_dtype`, shape (d,)
        """
        vector = np.asarray(vector, dtype=np.float64)
        s = self.levels(n_workers)
        if not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f"the agreed IntSGD scale must be finite and >= 0, got {scale}")
        if scale == 0:
            return np.zeros(vector.shape[0], dtype=self.wire_dtype)
        rng = np.random.default_rng(random_state)
        scaled = vector * (s / scale)
        levels = np.floor(scaled)
        levels += rng.random(vector.shape[0]) < (scaled - levels)
        # |scaled| <= s holds exactly in real arithmetic; the clip only undoes
        # a rounding of the division that lands one ulp beyond s.
        np.clip(levels, -s, s, out=levels)
        return levels.astype(self.wire_dtype)

    def decode_sum(self, total, scale, n_workers, dtype=np.float64):
        """The gradient sum ``alpha * total`` from the summed integers."""
        alpha = scale / self.levels(n_workers)
        return (np.asarray(total).astype(np.float64) * alpha).astype(dtype, copy=False)

    def message_nbytes(self, n_values):
        """Bytes a worker sends a step: its integers and its 8-byte scale statistic."""
        return n_values * self.wire_dtype.itemsize + 8

    def compress(self, vector, random_state=None):
        raise TypeError(
            "IntSGD messages are summed, not decoded one by one: use it where the "
            "workers' integers are summed (any backend; on MPI, topology='allreduce')"
        )

    def decompress(self, message, n_values=None):
        raise TypeError("IntSGD messages are summed, not decoded one by one")
