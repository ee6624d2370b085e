"""The package's exception types: what went wrong is the type, not a string."""

__all__ = ["DivergenceError"]


class DivergenceError(FloatingPointError):
    """SGD diverged: the loss or the gradient overflowed, or the batch loss
    rose far above where the fit started.

    A subclass of :class:`FloatingPointError`, which code written for earlier
    releases catches.

    Parameters
    ----------
    reason : str
        What was seen ("the gradient overflowed").
    advice : str, default=DivergenceError.ADVICE
        The one change that fixes it.

    Examples
    --------
    >>> from sklearn_relu import DivergenceError
    >>> error = DivergenceError("the gradient overflowed")
    >>> str(error)
    "SGD diverged: the gradient overflowed. Use learning_rate='auto' or a smaller learning_rate."
    >>> isinstance(error, FloatingPointError)
    True
    """

    ADVICE = "Use learning_rate='auto' or a smaller learning_rate."
    #: When the step that diverged was the "auto" one, advising "auto" is no advice.
    AUTO_ADVICE = (
        "learning_rate='auto' chose that step from the curvature at the initial "
        "point; give a smaller learning_rate."
    )

    def __init__(self, reason, advice=ADVICE):
        super().__init__(f"SGD diverged: {reason}. {advice}")
        self.reason, self.advice = reason, advice

    def with_advice(self, advice):
        """The same divergence with other advice (where the cause is known
        better than where it was raised)."""
        return type(self)(self.reason, advice)

    def __reduce__(self):
        # Raised in a joblib worker, it is pickled back to the caller.
        return type(self), (self.reason, self.advice)
