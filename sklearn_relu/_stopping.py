"""When a run stops: the rules the epoch loop of ``ReLURegressor`` asks after each epoch.

The epoch's mean batch loss is a noisy estimate: it mixes the losses of the
parameters along the epoch and the rows drawn. Where SGD progresses slowly
(unscaled features, skewed sample weights, few bits) the epoch-to-epoch
progress is smaller than that noise, and a rule that trusts the noisy loss stops
long before the fit is done. So the noisy loss only *proposes* stopping; the
exact training loss, one pass over the data, decides (docs/theory.rst,
"Stopping").
"""

import numpy as np

__all__ = ["LossPlateau", "ValidationPlateau"]


class LossPlateau:
    """Stop when the exact training loss has stalled, as proposed by the epoch loss.

    The epoch loss proposes a stop after ``n_iter_no_change`` epochs without
    falling below ``(1 - tol)`` times its best. The proposal is then judged on
    the *window* of epochs since the previous one: the mean of their end-of-epoch
    parameters, whose exact loss is free of both the sampling noise of the epoch
    loss and most of the wandering of SGD's iterates at a constant step. If that
    loss is below ``(1 - tol)`` times the previous window's (at the first
    proposal: the start point's), the fit is still progressing and the count
    restarts; otherwise it stops. A stalled fit thus costs one exact pass every
    ``n_iter_no_change`` epochs, and a slow but steady one continues. A loss at
    or below ``floor`` (the rounding floor of the dtype: the fit is exact) stops
    at once.

    Parameters
    ----------
    tol : float
    n_iter_no_change : int
    floor : float
    exact_loss : callable
        ``exact_loss(params)``: the exact training loss at ``params``.
    start_loss : float
        The exact training loss at the start point.

    Attributes
    ----------
    best_params : ndarray or None
        After a stop on a plateau: the window's mean parameters or the last
        ones, whichever has the lower exact loss; None until then (and after a
        stop at the floor, where the last parameters are exact).
    """

    def __init__(self, tol, n_iter_no_change, floor, exact_loss, start_loss):
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.floor = floor
        self.exact_loss = exact_loss
        self.checked_loss = start_loss
        self.best_epoch_loss = float("inf")
        self.no_change = 0
        self.best_params = None
        self._window_sum = 0.0
        self._window_size = 0

    def should_stop(self, epoch_loss, params):
        """Whether to stop after an epoch with mean batch loss ``epoch_loss``
        that ended at ``params``."""
        if epoch_loss <= self.floor:
            return True
        self._window_sum = self._window_sum + params.astype(np.float64)
        self._window_size += 1
        if epoch_loss < self.best_epoch_loss * (1 - self.tol):
            self.no_change = 0
        else:
            self.no_change += 1
        self.best_epoch_loss = min(self.best_epoch_loss, epoch_loss)
        if self.no_change < self.n_iter_no_change:
            return False
        mean_params = (self._window_sum / self._window_size).astype(params.dtype)
        mean_loss = self.exact_loss(mean_params)
        if mean_loss < self.checked_loss * (1 - self.tol):
            self.checked_loss = mean_loss
            self.no_change = 0
            self._window_sum, self._window_size = 0.0, 0
            return False
        last_loss = self.exact_loss(params)
        self.best_params = mean_params if mean_loss < last_loss else params
        return True

    _STATE = ("checked_loss", "best_epoch_loss", "no_change", "best_params",
              "_window_sum", "_window_size")

    def get_state(self):
        """What the rule has seen so far, as a dict (for a checkpoint)."""
        return {name: getattr(self, name) for name in self._STATE}

    def set_state(self, state):
        """Continue from ``state``, a dict :meth:`get_state` returned."""
        for name in self._STATE:
            setattr(self, name, state[name])


class ValidationPlateau:
    """Stop when the validation R^2 has not risen by ``tol`` for
    ``n_iter_no_change`` epochs; keeps the best parameters seen.

    The held-out score is exact for the parameters it scores, so it needs no
    confirmation.
    """

    def __init__(self, tol, n_iter_no_change):
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.best_score = -float("inf")
        self.best_params = None
        self.no_change = 0

    def should_stop(self, score, params):
        """Whether to stop after an epoch whose parameters score ``score``."""
        improved = score > self.best_score + self.tol
        if score > self.best_score:
            self.best_score, self.best_params = score, params
        self.no_change = 0 if improved else self.no_change + 1
        return self.no_change >= self.n_iter_no_change

    _STATE = ("best_score", "best_params", "no_change")

    get_state = LossPlateau.get_state
    set_state = LossPlateau.set_state
