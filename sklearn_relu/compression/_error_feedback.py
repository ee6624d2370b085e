"""Error feedback: send what a biased compressor drops at a later step
(Karimireddy et al., "Error feedback fixes SignSGD", 2019)."""

import numpy as np

from ._base import Compressor, _as_vector

__all__ = ["ErrorFeedback"]


class ErrorFeedback(Compressor):
    """Wrap a biased compressor ``C``: each worker sends ``C(g + e)`` and keeps
    ``e = g + e - C(g + e)``, what it could not send, for its next step.

    The memory ``e`` is the worker's state (carried by ``warm_start`` and
    ``partial_fit``); it is kept in gradient units, so the step is
    ``learning_rate * sum of the decoded messages`` as for SGD. With
    :class:`ScaledSign` this is EF-signSGD, with :class:`TopK` sparsified SGD
    with memory. Messages are ``C``'s, byte for byte.

    Parameters
    ----------
    compressor : Compressor
        A biased compressor with a ``contraction(d)`` method, the share of
        ``||v||^2`` it keeps.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_relu.compression import ErrorFeedback, TopK
    >>> c = ErrorFeedback(TopK(k=1))
    >>> c.decompress(c.compress(np.array([1.0, 0.75])))
    array([1., 0.])
    >>> c.get_state()   # what was not sent
    array([0.  , 0.75])
    >>> c.decompress(c.compress(np.array([1.0, 0.75])))  # 0.75 + 0.75 wins
    array([0. , 1.5])
    """

    stateful = True

    def __init__(self, compressor):
        if not isinstance(compressor, Compressor) or not compressor.biased:
            raise ValueError(
                "ErrorFeedback wraps a biased compressor (it adds nothing to an "
                f"unbiased one), got {compressor!r}"
            )
        if compressor.stateful:
            raise ValueError(
                f"ErrorFeedback wraps a stateless compressor, got {compressor!r}"
            )
        self.compressor = compressor
        self._memory = None

    @property
    def magic(self):
        return self.compressor.magic

    def variance_factor(self, n_values, n_workers=1):
        """``(1 - delta) / delta`` for a compressor keeping ``delta`` of
        ``||v||^2``: the memory's size relative to the gradient's, which the
        step must tolerate as if it were noise."""
        delta = self.compressor.contraction(n_values)
        return (1 - delta) / delta

    def reset(self):
        self._memory = None

    def get_state(self):
        return np.zeros(0) if self._memory is None else self._memory.astype(np.float64)

    def set_state(self, state):
        self._memory = None if len(state) == 0 else np.array(state, dtype=np.float64)

    def compress(self, vector, random_state=None):
        vector = _as_vector(vector)
        corrected = vector if self._memory is None else (vector + self._memory).astype(
            vector.dtype
        )
        message = self.compressor.compress(corrected, random_state)
        # Its own message: the length is known, whatever a sparse one may declare.
        decoded = self.compressor.decompress(message, corrected.shape[0])
        self._memory = (corrected - decoded).astype(np.float64)
        return message

    def decompress(self, message, n_values=None):
        return self.compressor.decompress(message, n_values)

    def message_nbytes(self, n_values, *args, **kwargs):
        return self.compressor.message_nbytes(n_values, *args, **kwargs)
