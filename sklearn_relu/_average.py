"""Averaged iterates, as ``SGDRegressor(average=...)`` keeps them: :class:`IterateAverage`.

With a constant step, SGD's last iterate keeps the noise of its last steps: on
noisy data it wanders in a ball around the optimum whose radius grows with
the step. The average of the iterates (Polyak-Ruppert averaging) cancels
that noise; averaging only the later ones (tail averaging, Jain et al. 2018,
which gives the minimax rate for least squares) leaves out the start's
transient. ``average=N`` averages the iterates after ``N`` samples, as
scikit-learn counts them: here ``batch_size`` samples a step (docs/user_guide.rst,
"Averaged iterates").
"""

import numpy as np

__all__ = ["IterateAverage"]


class IterateAverage:
    """The running mean of the iterates after step ``t`` whose samples seen,
    ``t * batch_size``, reach ``start``.

    Parameters
    ----------
    start : int
        Samples before the first averaged iterate (``average=True`` is 1:
        every iterate).
    batch_size : int
        Samples a step.
    mean : ndarray or None, default=None
        The average so far (float64), from a fit this one continues.
    count : int, default=0
        The iterates in ``mean``.

    Examples
    --------
    >>> import numpy as np
    >>> average = IterateAverage(start=20, batch_size=10)
    >>> for t, w in enumerate([np.array([4.0]), np.array([2.0]), np.array([0.0])], 1):
    ...     average.add(w, t)
    >>> average.mean, average.count   # steps 2 and 3: 20 and 30 samples
    (array([1.]), 2)
    """

    def __init__(self, start, batch_size, mean=None, count=0):
        self.start, self.batch_size = start, batch_size
        self.mean = None if mean is None else np.array(mean, dtype=np.float64)
        self.count = int(count)

    def add(self, params, step):
        """Average ``params``, the iterate after step ``step`` (from 1, counting
        the steps of the fits this one continues), once its samples reach
        :attr:`start`."""
        if step * self.batch_size < self.start:
            return
        self.count += 1
        if self.mean is None:
            self.mean = params.astype(np.float64)
        else:
            # As scikit-learn updates its average: by the difference over the
            # count, never a sum that grows with the steps.
            self.mean += (params - self.mean) / self.count

    def model(self, params):
        """The averaged model in ``params``' dtype; ``params`` itself before
        any iterate was averaged."""
        return params if self.mean is None else self.mean.astype(params.dtype)

    def get_state(self):
        """``(mean or None, count)``, what a continuing fit or a checkpoint keeps."""
        return (None if self.mean is None else self.mean.copy(), self.count)
