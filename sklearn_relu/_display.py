"""A picture of a fit: its loss against steps, bytes sent or seconds."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["ConvergenceDisplay"]

# x= and y= -> the fitted attribute read, and the axis label.
_X = {
    "steps": ("steps_curve_", "SGD steps"),
    "bytes": ("bytes_sent_curve_", "bytes sent by the workers"),
    "seconds": ("seconds_curve_", "seconds (wall time)"),
}
_Y = {
    "loss": ("loss_curve_", "mean batch loss of the epoch"),
    "validation_score": ("validation_scores_", "validation R^2"),
}


def _pyplot():
    """matplotlib.pyplot, imported when a picture is asked for: matplotlib is
    an optional dependency."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "ConvergenceDisplay draws with matplotlib, which is not installed: "
            "pip install 'sklearn-relu[plot]' (or pip install matplotlib)"
        ) from error
    return plt


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return choices[value]


def _default_label(estimator):
    """The solver, with its bit width where it has one: "qsgd, 4 bits"."""
    solver = estimator.solver
    if not isinstance(solver, str):
        return type(solver).__name__
    if solver in ("qsgd", "intsgd"):
        return f"{solver}, {estimator.bits} bits"
    return solver


class ConvergenceDisplay:
    """The loss of a fit, epoch by epoch, against its steps, the bytes its
    workers sent, or its seconds.

    Build it with :meth:`from_estimator`; call that again with the same
    ``ax`` to compare fits on one axes. All parameters are stored as
    attributes. Needs matplotlib (``pip install 'sklearn-relu[plot]'``).

    Parameters
    ----------
    x_values : array-like of shape (n_epochs,)
        Steps, bytes or seconds at the end of each epoch.
    y_values : array-like of shape (n_epochs,)
        The loss (or validation score) of each epoch.
    x : {"steps", "bytes", "seconds"}, default="steps"
        What ``x_values`` count: it names the x axis.
    y : {"loss", "validation_score"}, default="loss"
        What ``y_values`` are: it names the y axis. A loss is drawn on a
        logarithmic axis when every curve on the axes is positive.
    label : str or None, default=None
        The line's name in the legend; None draws no legend entry.

    Attributes
    ----------
    line_ : matplotlib.lines.Line2D
        The curve.
    ax_ : matplotlib.axes.Axes
        The axes it is on.
    figure_ : matplotlib.figure.Figure
        The figure of ``ax_``.

    See Also
    --------
    sklearn.metrics.RocCurveDisplay : The scikit-learn display this one follows.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")  # no window: draw to memory
    >>> import matplotlib.pyplot as plt
    >>> from sklearn_relu import ConvergenceDisplay, ReLURegressor, make_relu_regression
    >>> X, y = make_relu_regression(n_samples=1000, n_features=20, random_state=0)
    >>> sgd = ReLURegressor(random_state=0).fit(X, y)
    >>> qsgd = ReLURegressor(solver="qsgd", bits=4, random_state=0).fit(X, y)
    >>> display = ConvergenceDisplay.from_estimator(sgd, x="bytes")
    >>> display = ConvergenceDisplay.from_estimator(qsgd, x="bytes", ax=display.ax_)
    >>> [line.get_label() for line in display.ax_.get_lines()]
    ['sgd', 'qsgd, 4 bits']
    >>> list(display.line_.get_xdata()) == qsgd.bytes_sent_curve_
    True
    >>> plt.close(display.figure_)
    """

    def __init__(self, *, x_values, y_values, x="steps", y="loss", label=None):
        self.x_values = x_values
        self.y_values = y_values
        self.x = x
        self.y = y
        self.label = label

    def plot(self, ax=None, *, label=None, **line_kwargs):
        """Draw the curve.

        Parameters
        ----------
        ax : matplotlib.axes.Axes or None, default=None
            Where to draw; None: on a new figure.
        label : str or None, default=None
            The legend's name for the line, instead of ``self.label``.
        **line_kwargs
            Passed to ``ax.plot`` (``color``, ``linestyle``, ``marker``, ...).

        Returns
        -------
        display : ConvergenceDisplay
            ``self``, with ``line_``, ``ax_`` and ``figure_`` set.
        """
        x_label = _choice("x", self.x, _X)[1]
        y_label = _choice("y", self.y, _Y)[1]
        if ax is None:
            _, ax = _pyplot().subplots()
        label = self.label if label is None else label
        if label is not None:
            line_kwargs.setdefault("label", label)
        (self.line_,) = ax.plot(self.x_values, self.y_values, **line_kwargs)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        if self.y == "loss":
            # A loss falls by orders of magnitude: a logarithmic axis, unless
            # a curve on it touches 0.
            drawn = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.lines])
            positive = np.all(drawn[~np.isnan(drawn)] > 0)
            ax.set_yscale("log" if positive else "linear")
        if any(not line.get_label().startswith("_") for line in ax.lines):
            ax.legend()
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    def from_estimator(cls, estimator, *, x="steps", y="loss", ax=None, label=None,
                       **line_kwargs):
        """Draw a fitted :class:`~sklearn_relu.ReLURegressor`'s curve.

        Parameters
        ----------
        estimator : ReLURegressor or Pipeline
            Fitted; a pipeline's last step is read.
        x : {"steps", "bytes", "seconds"}, default="steps"
            The x axis: ``steps_curve_`` (SGD steps), ``bytes_sent_curve_``
            (the workers' gradient messages, as ``comm_record_`` counts them)
            or ``seconds_curve_`` (wall time), at the end of each epoch of the
            selected run. Bytes and seconds are NaN (not drawn) for the epochs
            of a fit resumed from a checkpoint.
        y : {"loss", "validation_score"}, default="loss"
            ``loss_curve_``, or ``validation_scores_`` (``early_stopping=True``).
        ax : matplotlib.axes.Axes or None, default=None
            Where to draw; None: on a new figure. Pass an earlier display's
            ``ax_`` to compare fits.
        label : str or None, default=None
            The legend's name for the line; default the solver ("sgd",
            "qsgd, 8 bits").
        **line_kwargs
            Passed to ``ax.plot``.

        Returns
        -------
        display : ConvergenceDisplay
        """
        if hasattr(estimator, "steps"):  # a Pipeline: the fit is its last step's
            estimator = estimator[-1]
        check_is_fitted(estimator, "loss_curve_")
        x_attribute = _choice("x", x, _X)[0]
        y_attribute = _choice("y", y, _Y)[0]
        x_values = getattr(estimator, x_attribute, None)
        if x_values is None:
            raise ValueError(
                f"{type(estimator).__name__} has no {x_attribute}: it was fitted by "
                "a version of sklearn_relu that did not record it; fit it again"
            )
        y_values = getattr(estimator, y_attribute)
        if y_values is None:
            raise ValueError(
                f"y={y!r} needs {y_attribute}, which a fit records only with "
                "early_stopping=True"
            )
        display = cls(
            x_values=np.asarray(x_values), y_values=np.asarray(y_values), x=x, y=y,
            label=_default_label(estimator) if label is None else label,
        )
        return display.plot(ax=ax, **line_kwargs)
