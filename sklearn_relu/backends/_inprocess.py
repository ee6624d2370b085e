"""The reference backend: every worker in this process, one after another."""

from .._worker import ShardWorker, shard_bounds
from ._base import Backend, Timer

__all__ = ["InProcessBackend"]


def make_workers(X, y, sample_weight, *, n_workers, batch_size, compressor, indices):
    """The workers ``indices`` of a fit, each holding a view of its rows."""
    workers = []
    for index in indices:
        start, stop = shard_bounds(X.shape[0], n_workers, index)
        workers.append(
            ShardWorker(
                X[start:stop],
                y[start:stop],
                None if sample_weight is None else sample_weight[start:stop],
                index=index,
                n_workers=n_workers,
                n_samples=X.shape[0],
                batch_size=batch_size,
                compressor=compressor,
            )
        )
    return workers


class InProcessBackend(Backend):
    """Run all workers sequentially in the calling process.

    This is the reference every other backend must agree with. Shards are views
    of ``X``: nothing is copied.
    """

    name = "inprocess"

    def _start(self, X, y, sample_weight, *, n_workers, batch_size, compressor):
        self.workers = make_workers(
            X, y, sample_weight, n_workers=n_workers, batch_size=batch_size,
            compressor=compressor, indices=range(n_workers),
        )

    def call(self, method, *args):
        return [getattr(worker, method)(*args) for worker in self.workers]

    def step(self, params, update):
        with Timer(self.record, "compute_seconds"):
            messages = [w.gradient_message(params) for w in self.workers]
        self.record.add_messages(messages, params.shape[0])
        with Timer(self.record, "communicate_seconds"):
            gradient = self.compressor.decompress(messages[0])
            for message in messages[1:]:
                gradient += self.compressor.decompress(message)
        return update(params, gradient)

    def stop(self):
        self.workers = []
