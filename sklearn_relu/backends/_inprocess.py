"""The reference backend: every worker in this process, one after another."""

from .. import _steps
from .._worker import ShardWorker, worker_arguments
from ._base import Backend, Timer

__all__ = ["InProcessBackend"]


class InProcessBackend(Backend):
    """Run all workers sequentially in the calling process.

    This is the reference every other backend must agree with. Shards are views
    of ``X``: nothing is copied.

    Parameters
    ----------
    reduction : MultiTreeSchedule, Hierarchy or None, default=None
        How the workers' vectors are summed. None: in worker order. A
        :func:`~sklearn_relu.collectives.multitree_schedule` or a
        :func:`~sklearn_relu.collectives.hierarchy`: in the order the MPI
        backend sums them with ``topology="multitree"`` or
        ``"hierarchical"`` on that network or grouping, so that an
        in-process run gives that fit's model, bit for bit (needs a
        summable compressor, ``solver="sgd"`` or ``"intsgd"``, and
        ``aggregation="mean"``).

    Where it gives the same model, :meth:`run_steps` takes an epoch's steps in
    one call of the compiled loop (``sklearn_relu/_steps.py``) instead of one
    :meth:`step` at a time; a subclass that overrides :meth:`step` keeps
    getting every step.
    """

    name = "inprocess"
    #: Whether :meth:`run_steps` may use the compiled loop (the tests turn it
    #: off to compare against the step-by-step reference).
    _fused_steps = True

    def __init__(self, reduction=None):
        super().__init__()
        self.reduction = reduction

    def _start(self, X, y, sample_weight, *, n_workers, batch_size, compressor):
        if self.reduction is not None:
            self.check_reduction(self.reduction, n_workers, compressor)
            self.refuse_omniscient_attack(True, "the in-process reduction")
            self.n_summands = self.reduction.n_summands
        self.workers = [
            ShardWorker(
                **worker_arguments(
                    X, y, sample_weight, index=index, n_workers=n_workers,
                    batch_size=batch_size, compressor=compressor,
                    attack=self.worker_attack(index), rows=self.worker_rows(index),
                )
            )
            for index in range(n_workers)
        ]

    def call(self, function, *args):
        return [function(worker, *args) for worker in self.workers]

    def step(self, params, update):
        if self.compressor.summed_only or self.reduction is not None:
            return self.summed_step(params, update)
        with Timer(self.record, "compute_seconds"):
            messages = [w.gradient_message(params) for w in self.workers]
        self.record.add_messages(messages, params.shape[0])
        with Timer(self.record, "communicate_seconds"):
            gradient = self.sum_decoded(messages, params.shape[0])
        return update(params, gradient)

    def run_steps(self, params, update, n_steps, after_step=None):
        if (
            after_step is None  # the compiled loop cannot stop after any step
            and self._fused_steps
            and self.reduction is None  # the loop sums in worker order
            and type(self).step is InProcessBackend.step
            and _steps.fusable(self, params, update)
        ):
            return _steps.run_steps(self, params, update, n_steps)
        return super().run_steps(params, update, n_steps, after_step)

    def _max_statistic(self, params, draw):
        params = params if draw else None
        with Timer(self.record, "compute_seconds"):
            if self.reduction is not None:
                vectors = self._summand_vectors(params)
                return max(self.compressor.scale_statistic(v) for v in vectors)
            return max(w.gradient_statistic(params) for w in self.workers)

    def _sum_summands(self, scale, params, draw):
        params = params if draw else None
        if self.reduction is not None:
            with Timer(self.record, "compute_seconds"):
                vectors = self._summand_vectors(params)
                parts = [
                    self.workers[index].encode_sum(vector, scale, self.n_summands)
                    for index, vector in zip(self.reduction.encoders, vectors)
                ]
            with Timer(self.record, "communicate_seconds"):
                self.check_summands(parts, self.reduction.encoders)
                return self.reduction.allreduce(parts), parts[0].nbytes
        with Timer(self.record, "compute_seconds"):
            parts = [w.summand(scale, params) for w in self.workers]
        with Timer(self.record, "communicate_seconds"):
            return self.sum_encoded(parts), parts[0].nbytes

    def _summand_vectors(self, params):
        """The vectors the reduction encodes (kept for a redone step): with
        ``params``, of new batches' gradients at ``params``."""
        if params is not None or self._kept is None:
            self._kept = self.reduction.summand_vectors(
                [w.kept_gradient(params) for w in self.workers]
            )
        return self._kept

    def stop(self):
        self.workers = []
        self._kept = None
