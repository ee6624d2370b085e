"""One call of ``fit`` or ``partial_fit`` once its data are on the backend:
:class:`Fit`.

It reads top-down: the start point and the step (:meth:`Fit.start`), the runs
of the ensemble (:meth:`Fit.execute`, each an :class:`~._run.SGDRun`), the
run kept (:func:`~._ensemble.select_consistent_run`), and what the kept model
says of the fit (:mod:`._diagnostics`). The estimator validates before and
stores after; it does not know the loop.
"""

import math
from dataclasses import dataclass

import numpy as np

from ._diagnostics import (
    column_moments,
    standardized,
    sums_statistics,
    undefended_attack,
    warn_if_rose,
    warn_stalled,
    warn_worse_than_mean,
)
from ._ensemble import select_consistent_run
from ._exceptions import DivergenceError
from ._init import check_init, initial_params
from ._run import RunPlan, RunResult, SGDRun, full_loss
from ._schedule import ConstantStep, HalvingStep, initial_sign_step
from ._sparse import issparse
from ._step_size import auto_learning_rate, measure_curvature
from ._worker import ShardWorker

__all__ = ["Continuation", "Fit", "FitResult"]

#: A loss this many times above both the start's and the zero model's diverged.
DIVERGENCE_FACTOR = 10.0
#: Residuals below this many eps of the dtype are rounding: the fit is exact.
PRECISION_FACTOR = 100.0
#: A training loss below this share of the mean-predicting model's is exact.
EXACT_LOSS = 1e-12


@dataclass(frozen=True)
class Continuation:
    """What a warm start or a later ``partial_fit`` continues from: the
    estimator's model (its last iterate, when it averaged them), its step
    counts, the curvature and sign step measured when it was initialized, its
    workers' compressor states, and the average of its iterates ``(mean,
    count)`` when it keeps one."""

    params: np.ndarray
    t: int
    n_iter: int
    curvature: object
    sign_step: object
    compressor_states: tuple
    average_state: tuple = (None, 0)
    momentum_states: tuple = (None, None, None)


@dataclass
class FitResult:
    """What the estimator stores from a fit: the kept run, the step, every
    run's coefficients and what a later warm start continues from."""

    run: RunResult
    learning_rate: object
    ensemble: np.ndarray
    compressor_states: tuple
    curvature: object
    sign_step: object
    momentum_states: tuple = (None, None, None)


class Fit:
    """A fit of validated parameters on a started backend.

    Parameters
    ----------
    params : namespace
        The estimator's parameters, validated (see :mod:`._params`).
    backend : Backend
        Started on the training data.
    data : TrainingSet
        What the backend's data preparation found (sizes, losses of the zero
        and mean models, the validation rows where this process holds them).
    compressor, aggregator : the strategies ``params`` name.
    rng : RandomState
        The fit's random stream, the same on every process.
    batch_size, n_workers : int
    partial : bool
        ``partial_fit``: one epoch, one run.
    continuation : Continuation or None
        The model a warm start or ``partial_fit`` continues from.
    checkpoint : FitCheckpoint or None
    """

    def __init__(self, params, backend, data, *, compressor, aggregator, rng,
                 batch_size, n_workers, partial, continuation, checkpoint):
        self.params, self.backend, self.data = params, backend, data
        self.compressor, self.aggregator, self.rng = compressor, aggregator, rng
        self.batch_size, self.n_workers = batch_size, n_workers
        self.partial, self.continuation = partial, continuation
        self.checkpoint = checkpoint
        self.n_features = data.X.shape[1]
        self.curvature = None if continuation is None else continuation.curvature
        self.sign_step = None if continuation is None else continuation.sign_step
        self.attacked = undefended_attack(params.n_byzantine, aggregator)

    def execute(self):
        """Run the fit; return a :class:`FitResult`. A divergence is raised
        with the advice that fixes it: the attack the aggregation does not
        withstand, or a smaller step than ``"auto"``'s."""
        try:
            return self._execute()
        except DivergenceError as error:
            if self.attacked:
                raise error.with_advice(self.attacked + ".") from None
            if self.params.learning_rate == "auto":
                raise error.with_advice(DivergenceError.AUTO_ADVICE) from None
            raise error from None

    def _execute(self):
        params0, learning_rate, start_loss = self.start()
        plan = self._plan(learning_rate, self._loss_bounds(params0, start_loss))
        runs, states, momenta = self._runs(plan, params0)
        stopped = runs[-1].stopped_by_callback
        # (A run finished by the fit a checkpoint resumes was not stopped.)
        chosen = len(runs) - 1 if stopped else select_consistent_run([r.params for r in runs])
        kept = runs[chosen]
        if not stopped:  # the caller chose this model; the advice is not for it
            self._diagnose(kept, learning_rate, plan.loss_bounds)
        return FitResult(
            run=kept, learning_rate=learning_rate,
            ensemble=np.array([r.params[: self.n_features] for r in runs]),
            # Error-feedback memory and momentum: what a warm start continues from.
            compressor_states=(self.compressor, self.n_workers, states[chosen]),
            curvature=self.curvature, sign_step=self.sign_step,
            momentum_states=(self.params.worker_momentum, self.n_workers, momenta[chosen]),
        )

    # -- the start point and the step -----------------------------------------------
    def start(self):
        """``(initial parameters, step schedule, training loss at them or None
        where it takes a pass of its own)``; a continuing fit's parameters are
        its model's."""
        params, continuation = self.params, self.continuation
        if continuation is not None:
            start = continuation.params[: self.n_features + int(params.fit_intercept)]
            initial, start_loss = start.astype(np.float64), None
        else:
            init = check_init(params.init, self.n_features)
            initial, start_loss = initial_params(
                init, self.backend.reduce, self.n_features, params.fit_intercept, self.rng
            )
        return initial, self._schedule(initial), start_loss

    def _schedule(self, initial):
        """The step schedule from ``initial``: a sign direction's halves, a
        gradient's is constant; ``"auto"`` from the curvature."""
        params = self.params
        sign_units = self.aggregator.sign_units(self.compressor)
        if sign_units and params.local_steps > 1:
            raise ValueError(
                f"local_steps={params.local_steps} takes gradient steps on each worker, "
                "but the step of a sign direction is a distance, not a gradient step's "
                "size: use local_steps=1, or error_feedback=True (a step in gradient "
                "units) and aggregation='mean'"
            )
        # A sign step shrinks with the steps taken, warm starts included.
        first = 0 if self.continuation is None else self.continuation.t
        # A number given since the last fit takes effect, as in scikit-learn's SGD.
        if params.learning_rate != "auto":
            step = params.learning_rate
            return HalvingStep(step, first=first) if sign_units else ConstantStep(step)
        # "auto" keeps the curvature measured when the model was initialized, but
        # recomputes the step from it: the batch size, solver, bits or workers of
        # this call (a small partial_fit chunk, a warm start at 2 bits) may need
        # a smaller one.
        if self.curvature is None:
            self.curvature = measure_curvature(
                self.backend.reduce, initial, self.rng,
                summed=sums_statistics(self.aggregator),
            )
        if sign_units:
            # Measured once, at the initial point, as the curvature is: the
            # schedule, not the gradient's size, shrinks a continuing fit's step.
            if self.sign_step is None:
                self.sign_step = initial_sign_step(
                    auto_learning_rate(self.curvature, self.batch_size),
                    np.linalg.norm(self.backend.reduce(ShardWorker.gradient, initial)),
                    initial.shape[0],
                )
            return HalvingStep(self.sign_step, first=first)
        delta = self.compressor.variance_factor(initial.shape[0], self.n_workers)
        # A rule with memory (BGMD) delays part of the aggregated step, not of
        # one worker's: its factor is not averaged over the workers.
        memory = self.aggregator.variance_factor(initial.shape[0])
        # Local steps are SGD steps on one worker's share of the batch: the
        # step is planned for that batch (docs/user_guide.rst, "Local steps").
        batch = self.batch_size if params.local_steps == 1 else self.batch_size // self.n_workers
        return ConstantStep(auto_learning_rate(
            self.curvature, batch, variance_factor=delta, n_workers=self.n_workers
        ) / (1 + memory))

    def _loss_bounds(self, params0, start_loss):
        """``(floor, ceiling, start_loss)``: see :class:`~._run.RunPlan`."""
        if start_loss is None:
            start_loss = full_loss(self.backend, params0)
        if not math.isfinite(start_loss):
            raise ValueError(
                f"the training loss at the initial point is {start_loss}: the "
                "initial coefficients (init) or the data are too large in "
                "magnitude for float arithmetic; rescale them"
            )
        zero_loss = self.data.zero_loss
        # A stable step never takes the loss far above both the start and the
        # zero model; a diverging one does, before or instead of overflowing
        # (the ReLU may die first and leave huge but finite coefficients).
        ceiling = DIVERGENCE_FACTOR * max(start_loss, zero_loss)
        # Below this the residuals are rounding noise of the dtype: a noiseless
        # problem is solved, and more epochs only shuffle the last bits.
        # In Python floats: a float32 eps would keep the product in float32,
        # which overflows to inf for targets beyond ~1e19 and stops every fit.
        eps = float(np.finfo(self.data.X.dtype).eps)
        floor = (PRECISION_FACTOR * eps) ** 2 * zero_loss
        return floor, ceiling, start_loss

    # -- the runs ---------------------------------------------------------------------
    def _plan(self, learning_rate, loss_bounds):
        params, data, continuation = self.params, self.data, self.continuation
        # An epoch is whole rounds: with local steps, n_samples / batch_size
        # steps rounded up to a multiple of local_steps.
        local_steps = params.local_steps
        rounds = math.ceil(math.ceil(data.n_samples / self.batch_size) / local_steps)
        return RunPlan(
            backend=self.backend, learning_rate=learning_rate,
            steps_per_epoch=rounds * local_steps,
            max_epochs=1 if self.partial else params.max_iter,
            tol=params.tol, n_iter_no_change=params.n_iter_no_change,
            validating=params.early_stopping and not self.partial,
            validation=data.validation, loss_bounds=loss_bounds,
            checkpoint=self.checkpoint, callback=params.callback,
            counted=(0, 0) if continuation is None else (continuation.t, continuation.n_iter),
            verbose=params.verbose, local_steps=local_steps,
            average=int(params.average), batch_size=self.batch_size,
            average_state=(None, 0) if continuation is None else continuation.average_state,
        )

    def _runs(self, plan, params0):
        """Every run's :class:`RunResult`, its workers' compressor states and
        momentum memories at its end, until the callback stops one."""
        continuing = self.continuation is not None
        n_runs = 1 if (self.partial or continuing) else self.params.n_ensemble
        momentum = self.params.worker_momentum
        checkpoint, runs, states, momenta = self.checkpoint, [], [], []
        for run in range(n_runs):
            self.backend.reseed(self.rng.randint(np.iinfo(np.int32).max))
            if momentum:
                self.backend.call(ShardWorker.start_momentum, momentum)
            if continuing:
                self._restore_worker_states()
            finished = checkpoint and checkpoint.finished_run(run)
            if finished:  # by the fit this one resumes
                kept = ("compressor_states", "momentum_states")
                runs.append(RunResult.from_dict(
                    {k: v for k, v in finished.items() if k not in kept}
                ))
                states.append(finished["compressor_states"])
                momenta.append(finished.get("momentum_states"))
                continue
            runs.append(SGDRun(plan, run).execute(params0.astype(self.data.X.dtype)))
            states.append(self.backend.compressor_states())
            momenta.append(self.backend.momentum_states() if momentum else None)
            if runs[-1].stopped_by_callback:
                break  # the fit ends at the step the callback chose
            if checkpoint is not None:
                checkpoint.run_finished(run, runs[-1].as_dict(), states[-1], n_runs,
                                        momentum_states=momenta[-1])
        return runs, states, momenta

    def _restore_worker_states(self):
        """Hand the workers the compressor states and momentum memories the
        last fit ended with, when they are states of the same compressor, or
        the same momentum, on as many workers."""
        saved, n_workers, states = self.continuation.compressor_states
        if states is not None and saved == self.compressor and n_workers == self.n_workers:
            self.backend.restore_compressor_states(states)
        beta, n_workers, states = self.continuation.momentum_states
        if (
            states is not None and self.params.worker_momentum
            and beta == self.params.worker_momentum and n_workers == self.n_workers
        ):
            self.backend.restore_momentum_states(states)

    # -- what the kept model says ---------------------------------------------------------
    def _diagnose(self, kept, learning_rate, loss_bounds):
        """Warn where the kept model is far from what the data allow."""
        floor, _, start_loss = loss_bounds
        backend, params, data = self.backend, self.params, self.data
        final_loss = full_loss(backend, kept.params.astype(np.float64))
        auto = params.learning_rate == "auto"
        if self.continuation is None and final_loss > 1.1 * start_loss + floor:
            warn_if_rose(start_loss, final_loss, learning_rate, self.attacked, auto)
        if self.partial:
            return
        if final_loss > data.mean_loss + floor:
            warn_worse_than_mean(
                final_loss, data, params.learning_rate, learning_rate, start_loss,
                None if kept.converged else kept.n_iter, self.attacked,
                standardized=lambda: standardized(backend.reduce(column_moments)),
                sparse=issparse(data.X),
            )
        elif (
            not self.attacked and not isinstance(learning_rate, HalvingStep)
            and final_loss > EXACT_LOSS * data.mean_loss
        ):
            # Below that loss a noiseless fit is at its minimum: slopes are
            # rounding. A sign method's step is a distance, the same for every
            # parameter: no parameter stalls for its scale.
            sums = backend.reduce(ShardWorker.progress, kept.params.astype(np.float64))
            warn_stalled(
                sums, learning_rate, kept.t, self.n_features,
                getattr(data, "feature_names", None), sparse=issparse(data.X),
            )
