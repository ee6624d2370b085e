"""The reference backend: every worker in this process, one after another."""

from .._worker import ShardWorker, worker_arguments
from ._base import Backend, Timer

__all__ = ["InProcessBackend"]


class InProcessBackend(Backend):
    """Run all workers sequentially in the calling process.

    This is the reference every other backend must agree with. Shards are views
    of ``X``: nothing is copied.
    """

    name = "inprocess"

    def _start(self, X, y, sample_weight, *, n_workers, batch_size, compressor):
        self.workers = [
            ShardWorker(
                **worker_arguments(
                    X, y, sample_weight, index=index, n_workers=n_workers,
                    batch_size=batch_size, compressor=compressor,
                    attack=self.worker_attack(index),
                )
            )
            for index in range(n_workers)
        ]

    def call(self, method, *args):
        return [getattr(worker, method)(*args) for worker in self.workers]

    def step(self, params, update):
        if self.compressor.summed_only:
            return self.summed_step(params, update)
        with Timer(self.record, "compute_seconds"):
            messages = [w.gradient_message(params) for w in self.workers]
        self.record.add_messages(messages, params.shape[0])
        with Timer(self.record, "communicate_seconds"):
            gradient = self.sum_decoded(messages, params.shape[0])
        return update(params, gradient)

    def _max_statistic(self, params, draw):
        params = params if draw else None
        with Timer(self.record, "compute_seconds"):
            return max(w.gradient_statistic(params) for w in self.workers)

    def _sum_summands(self, scale, params, draw):
        params = params if draw else None
        with Timer(self.record, "compute_seconds"):
            parts = [w.summand(scale, params) for w in self.workers]
        with Timer(self.record, "communicate_seconds"):
            return self.sum_encoded(parts), parts[0].nbytes

    def stop(self):
        self.workers = []
