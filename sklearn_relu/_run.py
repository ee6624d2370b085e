"""One SGD run of a fit, read top-down: :class:`SGDRun`.

A fit (``ReLURegressor._fit``) validates, prepares the data on the backend,
finds the start point and step, then makes one :class:`SGDRun` a run of the
ensemble. The run owns what changes while it runs: the update (the step
schedule), the stopping rule, the notifier that calls the user's callback,
and the checkpoint's saves; what every run shares is a :class:`RunPlan`.
"""

import functools
import math
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._average import IterateAverage
from ._exceptions import DivergenceError
from ._gradient import split_params
from ._progress import EpochProgress, end_run, log
from ._steps import SGDUpdate
from ._stopping import LossPlateau, ValidationPlateau
from ._worker import ShardWorker

__all__ = ["RunPlan", "RunResult", "SGDRun", "StepInfo", "full_loss"]

@dataclass(frozen=True)
class StepInfo:
    """What ``ReLURegressor(callback=...)`` is told after every SGD step.

    Attributes
    ----------
    run : int
        The run of the ensemble, from 0 (see ``n_ensemble``).
    step : int
        Steps taken by the run, as ``t_`` counts them: 1 after its first step
        (0 at the call before it), counting on through warm starts and
        ``partial_fit`` calls. With ``local_steps=H`` the callback is called
        after every round, when the workers' models are averaged: ``step``
        then counts each worker's local steps, ``H`` a round.
    epoch : int
        The epoch the step belongs to, from 1, as ``n_iter_`` counts them
        (0 at the call before the first step).
    params : ndarray of shape (n_features,) or (n_features + 1,)
        The parameters after the step, read-only: the coefficients, then the
        intercept when it is fitted.
    bytes_sent : int
        The workers' gradient messages so far, in bytes, as
        ``comm_record_.bytes_sent`` counts them.
    n_messages : int
        Their number, as ``comm_record_.n_messages`` counts them.
    """

    run: int
    step: int
    epoch: int
    params: np.ndarray
    bytes_sent: int
    n_messages: int


class StepNotifier:
    """Calls ``callback`` with a :class:`StepInfo` after every step of a run
    (through ``Backend.run_steps``'s ``after_step``) and says whether the fit
    stops there; under MPI the ranks' answers are combined (any one stops all)."""

    def __init__(self, callback, backend, run, step, epoch, local_steps=1):
        self.callback, self.backend, self.run = callback, backend, run
        self.step, self.epoch, self.local_steps = step, epoch, local_steps
        self.stopped = False

    def after_step(self, params):
        self.step += self.local_steps
        return self.notify(params)

    def notify(self, params):
        """Call the callback at ``params``; True if the fit stops there."""
        view = params.view()
        view.flags.writeable = False
        record = self.backend.record
        info = StepInfo(
            run=self.run, step=self.step, epoch=self.epoch, params=view,
            bytes_sent=record.bytes_sent, n_messages=record.n_messages,
        )
        self.stopped = self.backend.any_process(lambda: self.callback(info))
        return self.stopped


@dataclass
class RunResult:
    """What a run ended with: its model, counts and per-epoch curves.

    ``params`` are the final parameters, or the stopping rule's choice (the
    best validated, or the last window's mean), or the average of the iterates
    (``average``); the curves count from the run's start (``steps_curve`` the
    steps at the end of each epoch). When the iterates were averaged,
    ``iterate`` is the last of them and ``average_count`` their number: what
    a continuing fit goes on from.
    """

    params: np.ndarray
    n_iter: int
    t: int
    loss_curve: list
    steps_curve: list = field(default_factory=list)
    bytes_sent_curve: list = field(default_factory=list)
    seconds_curve: list = field(default_factory=list)
    validation_scores: list | None = None
    best_validation_score: float | None = None
    converged: bool = False
    stopped_by_callback: bool = False
    iterate: np.ndarray | None = None
    average_count: int = 0

    def as_dict(self):
        """The result as the checkpoint file keeps a finished run."""
        return asdict(self)

    @classmethod
    def from_dict(cls, saved):
        """A finished run as a checkpoint kept it; the curves of a file written
        before they were kept are NaN."""
        saved = dict(saved)
        for name in ("steps_curve", "bytes_sent_curve", "seconds_curve"):
            saved.setdefault(name, [math.nan] * len(saved["loss_curve"]))
        return cls(**saved)


@dataclass(frozen=True)
class RunPlan:
    """What every run of a fit shares.

    Attributes
    ----------
    backend : Backend
        Where the workers run (started).
    learning_rate : schedule
        The step at each step count (``ConstantStep`` or ``HalvingStep``).
    steps_per_epoch, max_epochs : int
    tol : float or None
    n_iter_no_change : int
    validating : bool
        Whether early stopping scores held-out rows.
    validation : tuple or None
        ``(X_val, y_val, sw_val)`` where this process holds them.
    loss_bounds : tuple of float
        ``(floor, ceiling, start_loss)``: a loss below ``floor`` is exact, one
        above ``ceiling`` diverged, and the training loss at the start.
    checkpoint : FitCheckpoint or None
    callback : callable or None
    counted : tuple of int
        The steps and epochs a continuing fit had taken (``t_``, ``n_iter_``),
        from which the callback's counts go on.
    verbose : int
    local_steps : int
        Each worker's steps a round (``steps_per_epoch`` is a multiple).
    average : int
        Samples before the first averaged iterate; 0: no average.
    batch_size : int
        Samples a step, over all workers.
    average_state : tuple
        ``(mean or None, count)`` of the iterates a continuing fit averaged.
    """

    backend: object
    learning_rate: object
    steps_per_epoch: int
    max_epochs: int
    tol: float | None
    n_iter_no_change: int
    validating: bool
    validation: tuple | None
    loss_bounds: tuple
    checkpoint: object = None
    callback: object = None
    counted: tuple = (0, 0)
    verbose: int = 0
    local_steps: int = 1
    average: int = 0
    batch_size: int = 0
    average_state: tuple = (None, 0)

    @property
    def rounds_per_epoch(self):
        """The rounds of communication in an epoch (its steps with one local step)."""
        return self.steps_per_epoch // self.local_steps

    @property
    def checks_loss(self):
        """Whether the stopping rule may end the run before ``max_epochs``."""
        return self.tol is not None and self.max_epochs > 1

    def stopping_rule(self):
        """A fresh stopping rule for a run."""
        tol = self.tol or 0.0
        if self.validating:
            return ValidationPlateau(tol, self.n_iter_no_change)
        floor, _, start_loss = self.loss_bounds
        return LossPlateau(
            tol, self.n_iter_no_change, floor,
            functools.partial(full_loss, self.backend), start_loss,
        )


class SGDRun:
    """Run ``run`` of a fit: epochs of SGD steps until the stopping rule, the
    callback or ``max_epochs`` ends it.

    Parameters
    ----------
    plan : RunPlan
    run : int
        The run's index in the ensemble.
    """

    def __init__(self, plan, run):
        self.plan, self.run = plan, run
        self.rule = plan.stopping_rule()
        self.losses, self.scores = [], []
        # Steps, bytes sent and seconds at the end of each epoch, from the
        # run's start.
        self.steps, self.sent, self.seconds = [], [], []
        self.first_epoch = 0
        self.notifier = None
        # The average of the iterates (average=...), or None.
        self.average = (
            IterateAverage(plan.average, plan.batch_size, *plan.average_state)
            if plan.average else None
        )
        self.converged = False
        self.started = None  # when the first epoch of this call began

    def execute(self, params):
        """Run from ``params`` (or from where the checkpoint left this run);
        return a :class:`RunResult`."""
        plan = self.plan
        resumed, params = self._resume(params)
        first = self.first_epoch * plan.steps_per_epoch
        update = SGDUpdate(plan.learning_rate, first=first, local_steps=plan.local_steps)
        if plan.local_steps > 1:
            plan.backend.call(
                ShardWorker.start_local_steps, plan.local_steps, plan.learning_rate, first
            )
        after_step = self._after_step()
        # At the start of a run (an uninterrupted fit made this call before
        # the steps a resumed one continues from).
        if self.notifier is not None and not resumed and self.notifier.notify(params):
            return self._result(params, 0, 0)
        self.started = time.perf_counter()
        seconds_before = math.nan if resumed else self.started
        sent_before = math.nan if resumed else plan.backend.record.bytes_sent
        epoch = self.first_epoch
        for epoch in range(self.first_epoch, plan.max_epochs):
            if self.notifier is not None:
                self.notifier.epoch = plan.counted[1] + epoch + 1
            rounds_before = update.taken
            params = plan.backend.run_steps(params, update, plan.rounds_per_epoch, after_step)
            plan.backend.record.n_rounds += update.taken - rounds_before
            self._record_epoch(epoch, sent_before, seconds_before)
            if self._ends_after(epoch, params):
                break
            self._save(epoch, params)
        return self._finish(params, epoch)

    # -- the steps of execute ---------------------------------------------------------
    def _resume(self, params):
        """``(resumed, params)``: the checkpoint's state of this run, if any."""
        plan = self.plan
        resumed = plan.checkpoint and plan.checkpoint.resume(self.run, self.rule)
        if not resumed:
            return False, params
        params, self.first_epoch, self.losses, saved_scores, average = resumed
        if self.average is not None:
            self.average = IterateAverage(plan.average, plan.batch_size, *average)
        done = self.first_epoch
        self.steps = [(e + 1) * plan.steps_per_epoch for e in range(done)]
        # A checkpoint keeps the losses, not when or after how many bytes the
        # killed fit reached them: NaN, for every epoch of this run.
        self.sent, self.seconds = [math.nan] * done, [math.nan] * done
        if plan.validating:
            self.scores = saved_scores
        if plan.verbose:
            log(f"run {self.run}: resumed from checkpoint {plan.checkpoint.path} after "
                f"epoch {done} ({done * plan.steps_per_epoch} steps)")
        return True, params

    def _after_step(self):
        """What runs after every step (round): the average's and the
        callback's; None without either, so that the steps may be taken many
        at a time (the compiled loop)."""
        plan = self.plan
        step = plan.counted[0] + self.first_epoch * plan.steps_per_epoch
        if plan.callback is not None:
            self.notifier = StepNotifier(
                plan.callback, plan.backend, self.run, step=step,
                epoch=plan.counted[1] + self.first_epoch, local_steps=plan.local_steps,
            )
        if self.average is None:
            return None if self.notifier is None else self.notifier.after_step
        steps = [step]

        def after_step(params):
            steps[0] += plan.local_steps
            self.average.add(params, steps[0])
            return self.notifier is not None and self.notifier.after_step(params)

        return after_step

    def _record_epoch(self, epoch, sent_before, seconds_before):
        """The epoch's mean batch loss and the curves' points; raise where the
        loss shows the step diverged."""
        plan = self.plan
        loss_sum, draws = plan.backend.reduce(ShardWorker.batch_loss)
        loss = loss_sum / draws
        if not loss <= plan.loss_bounds[1]:
            raise DivergenceError(
                f"the mean batch loss reached {loss:.3g} in epoch {epoch + 1} "
                f"with learning_rate={plan.learning_rate:.3g}"
            )
        self.losses.append(float(loss))  # plain floats, as in scikit-learn
        self.steps.append((epoch + 1) * plan.steps_per_epoch)
        self.sent.append(plan.backend.record.bytes_sent - sent_before)
        self.seconds.append(time.perf_counter() - seconds_before)

    def _ends_after(self, epoch, params):
        """Whether the run ends after ``epoch``: the callback stopped it, or
        the stopping rule (which sees every epoch, validation score or loss)."""
        plan, loss = self.plan, self.losses[-1]
        stopped = self.notifier is not None and self.notifier.stopped
        if plan.validating:
            # Scored where the validation set is (it may be on one process
            # only) and shared, so every process keeps the same epoch.
            here = (
                None if plan.validation is None
                else validation_statistics(plan.validation, params)
            )
            self.scores.append(r2_from_statistics(plan.backend.gather_validation(here)))
            if stopped:
                return True
            stop = self.rule.should_stop(self.scores[-1], params) or loss <= plan.loss_bounds[0]
        elif stopped:
            return True
        elif plan.checks_loss:
            # Every process sees the same losses, so all of them take the
            # same branch into the collective exact loss.
            stop = self.rule.should_stop(loss, params)
        else:
            stop = False
        if plan.verbose:
            self._log_epoch(epoch, loss)
        self.converged = plan.checks_loss and stop
        return self.converged

    def _log_epoch(self, epoch, loss):
        """The epoch's line and its progress (see :mod:`._progress`)."""
        plan = self.plan
        elapsed = time.perf_counter() - self.started
        message = (
            f"run {self.run}, epoch {epoch + 1} ({(epoch + 1) * plan.steps_per_epoch} steps, "
            f"{elapsed:.1f} s): loss {loss:.6g}"
        )
        if self.scores:
            message += f", validation R^2 {self.scores[-1]:.6g}"
        log(message, EpochProgress(
            run=self.run, epoch=epoch + 1, max_epochs=plan.max_epochs, loss=loss,
            bytes_sent=self.sent[-1], elapsed=elapsed,
            epochs_timed=epoch + 1 - self.first_epoch,
            main=plan.backend.main_process(), verbose=plan.verbose,
        ))

    def _save(self, epoch, params):
        """Save to the checkpoint when due; not after the last epoch, since a
        checkpoint must leave work to resume."""
        plan = self.plan
        done = epoch + 1
        if plan.checkpoint and done < plan.max_epochs and plan.checkpoint.due(done):
            plan.checkpoint.save(
                self.run, done, plan.steps_per_epoch, params, self.rule, self.losses,
                self.scores if plan.validating else None,
                average=None if self.average is None else self.average.get_state(),
            )

    def _finish(self, params, epoch):
        """The run's result after ``epoch``, the last it ran."""
        plan = self.plan
        if self.notifier is not None and self.notifier.stopped:
            if plan.verbose:
                log(f"run {self.run}: stopped by the callback at step {self.notifier.step}")
            taken = self.notifier.step - plan.counted[0]
            self.steps[-1] = taken
            return self._result(params, epoch + 1, taken)
        if plan.checks_loss and not self.converged:
            warnings.warn(
                f"ReLURegressor stopped after max_iter={plan.max_epochs} epochs without "
                "converging; increase max_iter or tol.",
                ConvergenceWarning,
            )
        final = params
        if self.rule.best_params is not None and self.average is None:
            final = self.rule.best_params
        return self._result(final, epoch + 1, (epoch + 1) * plan.steps_per_epoch)

    def _result(self, params, n_iter, t):
        if self.plan.verbose:
            stopped = self.notifier is not None and self.notifier.stopped
            end_run("stopped by the callback" if stopped else
                    "converged" if self.converged else "")
        validating = self.plan.validating
        stopped = self.notifier is not None and self.notifier.stopped
        iterate, count = None, 0
        if self.average is not None:
            # The average is the model, whatever ended the run; a continuing
            # fit steps on from the last iterate.
            iterate, count = params, self.average.count
            params = self.average.model(params)
        return RunResult(
            params=params, n_iter=n_iter, t=t, loss_curve=self.losses,
            steps_curve=list(self.steps), bytes_sent_curve=list(self.sent),
            seconds_curve=list(self.seconds),
            validation_scores=self.scores if validating else None,
            best_validation_score=(
                self.rule.best_score if validating and (n_iter > 0) else None
            ),
            converged=self.converged, stopped_by_callback=stopped,
            iterate=iterate, average_count=count,
        )


def full_loss(backend, params):
    """The exact weighted training loss at ``params``, summed over the workers."""
    loss_sum, weight_sum = backend.reduce(ShardWorker.loss, params)
    return loss_sum / weight_sum


def validation_statistics(validation, params):
    """``(sum w, weighted mean of y, sum w (y - mean)^2, sum w (y - pred)^2)`` of
    the model ``params`` on ``validation = (X_val, y_val, sw_val)``: what the
    validation R^2 needs, from rows that may be spread over processes."""
    X_val, y_val, sw_val = validation
    coef, intercept = split_params(params, X_val.shape[1])
    pred = np.maximum(X_val @ coef + intercept, 0)
    weight = 1.0 if sw_val is None else sw_val
    y_val = y_val.astype(np.float64)
    mean = np.average(y_val, weights=sw_val)
    total = float(y_val.shape[0]) if sw_val is None else float(np.sum(sw_val))
    return (
        total,
        float(mean),
        float((weight * (y_val - mean) ** 2).sum()),
        float((weight * (y_val - pred) ** 2).sum()),
    )


def r2_from_statistics(parts):
    """The R^2 of the union of the validation rows behind ``parts`` (in order),
    as :func:`sklearn.metrics.r2_score` computes it for one part: the spread
    about the overall mean combined by Chan et al.'s pairwise update."""
    total, mean, spread, residual = parts[0]
    for other_total, other_mean, other_spread, other_residual in parts[1:]:
        combined = total + other_total
        delta = other_mean - mean
        spread += other_spread + delta * delta * total * other_total / combined
        mean += delta * other_total / combined
        total = combined
        residual += other_residual
    if spread == 0:
        # r2_score's convention for a constant target.
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / spread
