"""A fit that survives being killed: ``ReLURegressor(checkpoint=path)``.

Every ``checkpoint_every`` epochs the fit writes, atomically (:func:`._persist.
atomic_write`), everything it needs to continue, and the same fit started again
resumes from the file and removes it when it ends. A resumed fit ends with the
same model, to the last bit, as one that was never interrupted.

What is saved, and why it is enough:

- The fit's prefix (validation, the validation split, the initial point, the
  step size, each run's seed) is a deterministic function of the data, the
  parameters and the estimator's random stream at the start of the fit. The
  checkpoint keeps that stream's starting state (a fresh one when
  ``random_state`` is None), and a resumed fit recomputes the prefix from it.
- The run in progress: its parameters, the epochs and steps done (the step
  counter drives the sign methods' schedule), the epoch losses and validation
  scores, the stopping rule's state, every worker's random stream, every
  worker's compressor state (error-feedback memory, momentum), the
  aggregator's state, the scale a summable compressor (IntSGD) agreed on for
  the next step, and the communication record; and the runs of an ensemble
  already finished.
- A fingerprint: a SHA-256 of the parameters (those that change the model),
  of the number of workers and of a warm start's starting point, and one of
  every worker's rows. A checkpoint whose fingerprint differs from the fit's
  is refused, so that no fit continues another one.

The file is a NumPy ``.npz`` archive (read with ``allow_pickle=False``: loading
one runs no code): the arrays, and the rest as JSON. Processes that each run
``fit`` (MPI ranks) all take part; only :meth:`Backend.main_process` reads and
writes the file, and the others receive its content.
"""

import hashlib
import json
import numbers
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ._persist import atomic_write
from ._worker import ShardWorker
from .backends._base import CommunicationRecord

__all__ = ["FitCheckpoint", "open_checkpoint"]

FORMAT = 1
# Parameters that do not change the model: a fit may resume with other values.
_NOT_IN_FINGERPRINT = ("checkpoint", "checkpoint_every", "verbose", "backend")


def check_checkpoint_params(checkpoint, checkpoint_every):
    """Raise ``ValueError`` for a bad ``checkpoint`` or ``checkpoint_every``."""
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise ValueError(
            f"checkpoint must be None or a file path, got {checkpoint!r}"
        )
    if checkpoint is not None and str(checkpoint) == "":
        raise ValueError("checkpoint must be None or a file path, got ''")
    if (
        not isinstance(checkpoint_every, numbers.Integral)
        or isinstance(checkpoint_every, bool)
        or checkpoint_every < 1
    ):
        raise ValueError(
            f"checkpoint_every must be an integer >= 1 (epochs), got {checkpoint_every!r}"
        )


def _digest(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _described_parameters(estimator, shared, continuing):
    """What the model depends on besides the data, as strings by name."""
    described = {
        name: value for name, value in shared.items() if name not in _NOT_IN_FINGERPRINT
    }
    # Instances (a compressor, an aggregator) by their parameters.
    for name in ("solver", "aggregation"):
        value = estimator.get_params(deep=False)[name]
        if not isinstance(value, str):
            described[name] = repr(value)
    random_state = estimator.random_state
    described["random_state"] = (
        random_state if random_state is None or isinstance(random_state, numbers.Integral)
        else type(random_state).__qualname__
    )
    described["n_workers"] = estimator._n_workers
    if continuing:  # a warm start continues from the estimator's model
        start = np.append(estimator.coef_, estimator.intercept_).astype(np.float64)
        described["start"] = [
            hashlib.sha256(start.tobytes()).hexdigest(), int(estimator.t_),
            repr(getattr(estimator, "_curvature", None)),
        ]
    return {str(k): str(v) for k, v in described.items()}


def _first_difference(saved, described):
    for name in sorted(set(saved) | set(described)):
        if saved.get(name) != described.get(name):
            return f"{name}={described.get(name)} instead of {saved.get(name)}"
    return "the same parameters under another fingerprint"


# -- the file: arrays, and the rest as JSON ------------------------------------------
def _split(tree, arrays, prefix="a"):
    """``tree`` with every ndarray replaced by a reference into ``arrays``."""
    if isinstance(tree, np.ndarray):
        key = f"{prefix}{len(arrays)}"
        arrays[key] = tree
        return {"__array__": key}
    if isinstance(tree, dict):
        return {key: _split(value, arrays, prefix) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split(value, arrays, prefix) for value in tree]
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def _join(tree, arrays):
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        return {key: _join(value, arrays) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_join(value, arrays) for value in tree]
    return tree


def _write(path, content):
    arrays = {}
    meta = _split(content, arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    def write(temporary):
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())

    atomic_write(path, write)


def _read(path):
    """The content of a checkpoint file, or a ``ValueError`` saying what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        content = _join(meta, arrays)
        if content.get("format") != FORMAT:
            raise ValueError(f"format {content.get('format')!r}, expected {FORMAT}")
        return content
    except Exception as error:
        raise ValueError(
            f"checkpoint {str(path)!r} is not a checkpoint this version can read "
            f"({error}); remove it to start the fit afresh"
        ) from None


def open_checkpoint(estimator, backend, rng, shared, partial, continuing):
    """The fit's :class:`FitCheckpoint`, or None without ``checkpoint``.

    Called on every process of the fit before ``rng`` is first used: a
    checkpoint of the same parameters sets ``rng`` back to the state the
    interrupted fit started from, one of other parameters is refused.
    """
    if estimator.checkpoint is None:
        return None
    if partial:
        raise ValueError(
            "checkpoint applies to fit; partial_fit runs a single epoch and keeps "
            "its state in the estimator (set checkpoint=None)"
        )
    path = Path(estimator.checkpoint)
    found, problem = None, None
    if backend.main_process():
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            problem = (
                f"checkpoint {str(path)!r}: the folder {str(path.parent)!r} does "
                "not exist or is not writable"
            )
        elif path.exists():
            try:
                found = _read(path)
            except ValueError as error:
                problem = str(error)
    found, problem = backend.common((found, problem))
    if problem:
        raise ValueError(problem)
    described = backend.common(_described_parameters(estimator, shared, continuing))
    fingerprint = _digest(described)
    if found is not None:
        if found["fingerprint"]["parameters"] != fingerprint:
            raise ValueError(
                f"checkpoint {str(path)!r} was written by a fit with other "
                "parameters (or another number of workers, or another starting "
                f"model): this fit has "
                f"{_first_difference(found['parameters'], described)}; it cannot "
                "continue this fit. Remove it, or give this fit another checkpoint "
                "path"
            )
        key, position, has_gauss, cached = found["rng_start"]
        rng.set_state(("MT19937", key, position, has_gauss, cached))
    _, key, position, has_gauss, cached = rng.get_state()
    rng_start = [key, int(position), int(has_gauss), float(cached)]
    return FitCheckpoint(
        path, estimator.checkpoint_every, backend, fingerprint, described, rng_start,
        found,
    )


class FitCheckpoint:
    """The checkpoint of one fit: resumes from what it found, saves as it goes.

    Parameters
    ----------
    path : Path
    every : int
        Epochs between saves.
    backend : Backend
    fingerprint : str
        The parameters' fingerprint.
    described : dict
        The parameters behind it, kept to say which one differs.
    rng_start : list
        The estimator's random stream at the start of the fit.
    found : dict or None
        The content of the file this fit resumes from.
    """

    def __init__(self, path, every, backend, fingerprint, described, rng_start, found):
        self.path, self.every, self.backend = path, every, backend
        self.fingerprint = {"parameters": fingerprint, "data": None}
        self.described = described
        self.rng_start = rng_start
        self.found = found
        self.finished = [] if found is None else found["finished"]

    def check_data(self):
        """Fingerprint every worker's rows (after ``backend.start``); refuse a
        checkpoint of other data."""
        digest = hashlib.sha256()
        for part in self.backend.call(ShardWorker.fingerprint):
            digest.update(np.asarray(part, dtype=np.uint8).tobytes())
        self.fingerprint["data"] = self.backend.common(digest.hexdigest())
        if self.found is not None and self.found["fingerprint"]["data"] != (
            self.fingerprint["data"]
        ):
            raise ValueError(
                f"checkpoint {str(self.path)!r} was written by a fit on other data "
                "(other rows, targets, sample weights, dtype or validation split); "
                "it cannot continue this fit. Remove it, or give this fit another "
                "checkpoint path"
            )

    # -- resuming ------------------------------------------------------------------
    def finished_run(self, run):
        """The result of run ``run`` when the interrupted fit had finished it."""
        return self.finished[run] if run < len(self.finished) else None

    def resume(self, run, rule):
        """Restore run ``run`` where it was saved, after the run's reseed.

        Returns ``(params, epochs done, losses, scores)``, or None when this run
        starts from its beginning.
        """
        found = self.found
        if found is None or found["run"] != run:
            return None
        backend = self.backend
        backend.record = CommunicationRecord(**found["record"])
        if found["epoch"] == 0:
            return None
        backend.call(ShardWorker.restore_random_state, found["worker_rngs"])
        if found["compressor_states"] is not None:
            backend.restore_compressor_states(found["compressor_states"])
        if found["aggregator_state"] is not None:
            backend.aggregator.set_state(found["aggregator_state"])
        # A summable compressor's scale, agreed in the last step for the next.
        backend.agreed_scale = found["agreed_scale"]
        rule.set_state(found["rule"])
        return (
            found["params"], found["epoch"], list(found["losses"]),
            None if found["scores"] is None else list(found["scores"]),
        )

    # -- saving --------------------------------------------------------------------
    def due(self, epochs_done):
        return epochs_done % self.every == 0

    def save(self, run, epochs_done, steps_per_epoch, params, rule, losses, scores):
        """Write the state after ``epochs_done`` epochs of run ``run``.

        Collective: every process of the fit calls it; one writes.
        """
        backend = self.backend
        worker_rngs = np.array(backend.call(ShardWorker.random_state), dtype=np.uint64)
        compressor_states = backend.compressor_states()
        aggregator_state = backend.aggregator.get_state()
        if not backend.main_process():
            return
        _write(self.path, {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "parameters": self.described,
            "rng_start": self.rng_start,
            "run": run,
            "epoch": epochs_done,
            "t": epochs_done * steps_per_epoch,
            "params": np.asarray(params),
            "losses": [float(loss) for loss in losses],
            "scores": scores,
            "rule": None if rule is None else rule.get_state(),
            "worker_rngs": worker_rngs,
            "compressor_states": compressor_states,
            "aggregator_state": aggregator_state,
            "agreed_scale": backend.agreed_scale,
            "record": asdict(backend.record),
            "finished": self.finished,
        })

    def run_finished(self, run, result, n_runs):
        """Keep a finished run of an ensemble; save, so that it is not redone."""
        kept = {key: value for key, value in result.items() if key != "compressor_states"}
        kept["compressor_states"] = result["compressor_states"][2]
        self.finished.append(kept)
        if run + 1 < n_runs:
            self.save(run + 1, 0, 0, np.zeros(0), None, [], None)

    def remove(self):
        """Delete the file at the end of a fit that completed."""
        if self.backend.main_process():
            self.path.unlink(missing_ok=True)
