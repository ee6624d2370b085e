"""IntSGD: gradients rounded to integers on a shared scale, summed as integers.

After Mishchenko et al., "IntSGD: adaptive floatless compression of stochastic
gradients" (ICLR 2022). Every worker divides its gradient by the same scale
``alpha`` and rounds each coordinate stochastically to an integer; the workers'
integer vectors are then summed by an integer allreduce (MPI's ``Allreduce``
on ``int8``/``int16``/``int32`` buffers), and the sum times ``alpha`` is the
gradient. Integer sums are exact in any order, so the model is the same, to the
last bit, whatever order MPI sums in and on every backend.

The scale bounds every worker's largest entry, and the levels are set so that
every rounded value lies in ``[-s, s]`` with ``s = floor(T / W)``, ``T`` the
wire type's largest value and ``W`` the number of workers: the sum of ``W``
such values is at most ``T`` in magnitude, so it can never overflow, and
nothing is ever clipped.

The workers agree on the scale without a collective of its own. Each vector
ends with a short trailer of integers that sum, over the workers, into a
histogram of the ratios ``max_i |g_i| / scale``: from it every worker derives
the same scale for the next step, a bound on this step's largest entry with a
little headroom. A worker whose largest entry exceeds the agreed scale (the
gradient grew faster than the headroom) sends only a flag in its trailer; the
step is then redone with the exact scale, the MAX over the workers (one
8-byte ``Allreduce``), as is the first step of a fit. Whether a step is redone
depends on the gradients alone, never on the rounding, so the estimate stays
unbiased. See :ref:`intsgd-scale` in the documentation.
"""

import math
import numbers

import numpy as np

from ._base import MessageError
from ._summable import SummableCompressor

__all__ = ["IntSGD"]

_WIRE_TYPES = {8: np.int8, 16: np.int16, 32: np.int32}

# The trailer after the d integers of a worker's vector: a "failed" count, an
# "exceeded the scale" count, then one count per band of the ratio
# r = max_i |g_i| / scale. Band b holds 2**(-(b + 1) / 8) < r <= 2**(-b / 8):
# eight bands a factor of two, eight factors of two (the last band also holds
# everything smaller). Summed over workers, each entry is at most W <= T.
_FAILED, _EXCEEDED, _FIRST_BAND = 0, 1, 2
BANDS_PER_OCTAVE = 8
N_BANDS = 64
TRAILER_LENGTH = _FIRST_BAND + N_BANDS
#: The next step's scale is the bound the bands give on this step's largest
#: entry, times this: room for the largest entry to grow by 30% in one step.
#: The largest entry over all workers is noisy: from one step to the next it
#: grew by more than 9% in 21% of the steps of a fit at d = 4000 on 16
#: workers, by more than 19% in 9%, by more than 42% in 1%. With this room,
#: 1.5% of that fit's steps were redone; more room costs rounding noise (the
#: step ``learning_rate="auto"`` plans shrinks with it), less costs redone
#: steps. See :ref:`intsgd-scale`.
HEADROOM = 2.0 ** 0.375


class IntSGD(SummableCompressor):
    """Unbiased integer rounding on a shared scale; messages sum as integers.

    A worker with gradient ``g`` sends the integers
    ``q_i = floor(g_i / alpha + u_i)``, ``u_i`` uniform on ``[0, 1)``, where
    ``alpha = M / s``, ``M`` the agreed scale, at least the largest ``|g_i|``
    over all workers, and ``s = floor((2**(bits-1) - 1) / n_workers)``. So
    ``|q_i| <= s``, ``E[alpha q_i] = g_i`` (unbiased), and the variance of a
    coordinate is ``alpha^2 f (1 - f)`` with ``f`` the fractional part of
    ``g_i / alpha``: at most ``alpha^2 / 4`` and at most ``alpha |g_i|``, hence

    ``E||alpha q - g||^2 <= min(d alpha^2 / 4, alpha ||g||_1)
    <= min(d / (4 s^2), sqrt(d) / s) * M^2``.

    The integers of all workers are added exactly (in the wire type: the sum
    cannot overflow) and decoded once, ``alpha * sum_w q_w``.

    ``M`` is the exact MAX over the workers (one 8-byte ``Allreduce``) on the
    first step only. After it, each vector's trailer of
    :data:`TRAILER_LENGTH` integers sums into counts of the workers' ratios
    ``max_i |g_i| / M`` in bands of ``2**(1/8)``, from which
    :meth:`next_scale` gives every worker the same ``M`` for the next step:
    the bound on this step's largest entry, times :data:`HEADROOM`. A worker
    whose gradient outgrew it sends a flag instead; the step is then redone
    with the exact MAX.

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
    >>> parts[0].dtype, parts[0].nbytes          # int8: 3 values and the trailer
    (dtype('int8'), 69)
    >>> total = parts[0] + parts[1]                       # what Allreduce(SUM) does
    >>> c.decode_sum(total, scale, 2).round(3)  # unbiased for g0 + g1 = [1.5, -1, -0.25]
    array([ 1.492, -1.   , -0.238])
    >>> c.needs_exact_scale(total)            # nobody outgrew the scale
    False
    >>> round(c.next_scale(total, scale), 3)  # next step's: 1.0 bounded, headroom
    1.297
    """

    #: Workers must agree on a scale: the exact MAX on the first step, then
    #: the one :meth:`next_scale` derives from the last step's sum.
    needs_scale = True
    #: Only summed messages exist: each worker's integers mean nothing alone.
    summed_only = True
    #: The next step's scale over the bound on this step's largest entry
    #: (:data:`HEADROOM`).
    headroom = HEADROOM

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
        ``sigma sqrt(2 ln(2 d W))``; the predicted scale ``M`` exceeds it by
        the band and the headroom, ``c = 2**(3/8)`` to ``2**(1/2)``, about
        ``2**(7/16)`` on average. The two per-coordinate bounds
        ``alpha^2 / 4`` and ``alpha |g_i|`` then give
        ``min(c^2 ln(2 d W) / (2 s^2), c sqrt(2 ln(2 d W)) sqrt(2 / pi) / s)``.
        This returns that, capped by the worst case: 0.22 at ``d = 4000``,
        ``W = 16``, 8 bits. A gradient far spikier than Gaussian noise gets a
        step up to ``(1 + worst) / (1 + typical)`` times larger than planned.
        """
        d, s = max(int(n_values), 1), self.levels(n_workers)
        worst = min(d / (4 * s**2), math.sqrt(d) / s)
        slack = 2.0 ** (1 / (2 * BANDS_PER_OCTAVE)) * self.headroom
        spread = 2 * math.log(2 * d * n_workers) * slack**2
        typical = min(spread / (4 * s**2), math.sqrt(spread) * math.sqrt(2 / math.pi) / s)
        return min(worst, typical)

    def scale_statistic(self, vector):
        """This worker's ``max_i |g_i|``; the exact scale is the MAX over workers."""
        vector = np.asarray(vector)
        if vector.size == 0:
            return 0.0
        return float(np.max(np.abs(vector)))

    def encode(self, vector, scale, n_workers, random_state=None):
        """Round ``vector / alpha`` stochastically to integers in ``[-s, s]``,
        followed by the trailer (:data:`TRAILER_LENGTH` integers).

        If ``max_i |vector_i|`` exceeds ``scale`` (a scale predicted by
        :meth:`next_scale` that the gradient outgrew), nothing is rounded:
        the integers are zeros and the trailer says so; the backend then
        redoes the step with the exact scale (:meth:`needs_exact_scale`).

        Parameters
        ----------
        vector : ndarray of shape (d,)
        scale : float
            The agreed scale: the MAX of :meth:`scale_statistic` over all
            workers, or what :meth:`next_scale` predicted from the last step.
        n_workers : int
            Workers whose integers will be summed.
        random_state : int, numpy.random.Generator or None

        Returns
        -------
        ndarray of :attr:`wire_dtype`, shape (d + TRAILER_LENGTH,)
        """
        vector = np.asarray(vector, dtype=np.float64)
        s = self.levels(n_workers)
        if not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f"the agreed IntSGD scale must be finite and >= 0, got {scale}")
        d = vector.shape[0]
        out = np.zeros(d + TRAILER_LENGTH, dtype=self.wire_dtype)
        largest = self.scale_statistic(vector)
        if largest > scale:
            out[d + _EXCEEDED] = 1
            return out
        if largest == 0:
            out[d + _FIRST_BAND + N_BANDS - 1] = 1
            return out
        rng = np.random.default_rng(random_state)
        factor = s / scale
        # A subnormal scale overflows s / scale (inf * 0 is NaN); dividing
        # first keeps |vector / scale| <= 1. Otherwise the product, as always.
        scaled = vector * factor if math.isfinite(factor) else (vector / scale) * s
        levels = np.floor(scaled)
        levels += rng.random(d) < (scaled - levels)
        # |scaled| <= s holds exactly in real arithmetic; the clip only undoes
        # a rounding of the division that lands one ulp beyond s.
        np.clip(levels, -s, s, out=levels)
        out[:d] = levels
        band = math.floor(-math.log2(largest / scale) * BANDS_PER_OCTAVE)
        out[d + _FIRST_BAND + min(max(band, 0), N_BANDS - 1)] = 1
        return out

    def decode_sum(self, total, scale, n_workers, dtype=np.float64):
        """The gradient sum ``alpha * total`` from the summed integers (the
        trailer dropped)."""
        alpha = scale / self.levels(n_workers)
        values = np.asarray(total)[:-TRAILER_LENGTH]
        return (values.astype(np.float64) * alpha).astype(dtype, copy=False)

    def failed_summand(self, n_values, dtype=None):
        """What a worker whose gradient failed adds, so that every worker sees
        the failure in the sum (:meth:`sum_failed`) instead of waiting."""
        out = np.zeros(n_values + TRAILER_LENGTH, dtype=self.wire_dtype)
        out[n_values + _FAILED] = 1
        return out

    def sum_failed(self, total):
        """Whether some worker's gradient failed this step."""
        return bool(np.asarray(total)[-TRAILER_LENGTH + _FAILED] > 0)

    def check_summand(self, part, n_summands, sender="a worker"):
        """Raise :class:`~sklearn_relu.compression.MessageError` unless
        ``part`` is what :meth:`encode` sends for a sum of ``n_summands``:
        1-D, in :attr:`wire_dtype`, its integers in ``[-s, s]`` and its
        trailer's counts 0 or 1. A value beyond would wrap the sum in the
        wire type silently (127 three times is 125 in ``int8``).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_relu.compression import IntSGD
        >>> c = IntSGD(bits=8)
        >>> part = c.encode(np.array([0.5, -1.0]), 1.0, 3, random_state=0)
        >>> c.check_summand(part, 3)
        >>> part[0] = 127
        >>> c.check_summand(part, 3, sender="worker 2")  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        sklearn_relu.compression._base.MessageError: worker 2 sent 127 at coordinate 0,
        outside [-42, 42]: each of 3 summands of IntSGD(bits=8) keeps to that range, so
        that their int8 sum cannot overflow
        """
        part = np.asarray(part)
        if part.dtype != self.wire_dtype or part.ndim != 1 or part.shape[0] < TRAILER_LENGTH:
            raise MessageError(
                f"{sender} sent an array of {part.dtype}, shape {part.shape}, to sum; "
                f"{self!r} sums 1-D {self.wire_dtype} vectors of at least "
                f"{TRAILER_LENGTH} entries"
            )
        s, d = self.levels(n_summands), part.shape[0] - TRAILER_LENGTH
        _check_range(part[:d], -s, s, sender, 0, (
            f"each of {n_summands} summands of {self!r} keeps to that range, so "
            f"that their {self.wire_dtype} sum cannot overflow"
        ))
        _check_range(part[d:], 0, 1, sender, d, (
            f"the trailer after the {d} integers holds counts of 0 or 1 a worker"
        ))

    def needs_exact_scale(self, total):
        """Whether some worker's largest entry exceeded the agreed scale: the
        step must be redone with the exact scale (the MAX over workers)."""
        return bool(np.asarray(total)[-TRAILER_LENGTH + _EXCEEDED] > 0)

    def next_scale(self, total, scale):
        """The scale for the next step, the same on every worker: the bound the
        summed band counts give on this step's largest entry over all workers,
        times :attr:`headroom`. ``None`` (agree on the exact scale) when there
        is no bound to start from."""
        bands = np.asarray(total)[-N_BANDS:]
        occupied = np.flatnonzero(bands)
        if scale == 0 or occupied.size == 0:
            return None
        bound = scale * 2.0 ** (-int(occupied[0]) / BANDS_PER_OCTAVE)
        return bound * self.headroom

    def message_nbytes(self, n_values):
        """Bytes a worker sends in a step that keeps the agreed scale: its
        integers and the trailer. A step that agrees on the exact scale (the
        first, or one whose gradient outgrew the scale) adds 8 bytes, and a
        redone one sends its integers twice."""
        return (n_values + TRAILER_LENGTH) * self.wire_dtype.itemsize

    def compress(self, vector, random_state=None):
        raise TypeError(
            "IntSGD messages are summed, not decoded one by one: use it where the "
            "workers' integers are summed (any backend; on MPI, topology='allreduce')"
        )

    def decompress(self, message, n_values=None):
        raise TypeError("IntSGD messages are summed, not decoded one by one")


def _check_range(values, low, high, sender, offset, why):
    """Raise MessageError naming ``sender`` and the first of ``values``
    (coordinates ``offset`` on of a vector) outside ``[low, high]``."""
    if values.size == 0 or (values.min() >= low and values.max() <= high):
        return
    index = int(np.flatnonzero((values < low) | (values > high))[0])
    raise MessageError(
        f"{sender} sent {values[index]} at coordinate {offset + index}, outside "
        f"[{low}, {high}]: {why}"
    )
