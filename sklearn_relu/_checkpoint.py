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
- A fingerprint: a SHA-256 of the parameters (those that change the model;
  an instance, such as an attack or a compressor, by its class and its own
  parameters, a function by its module and name), of the number of workers
  and of a warm start's starting point, and one of every worker's rows. A
  checkpoint whose fingerprint differs from the fit's is refused, so that no
  fit continues another one.

The file is a NumPy ``.npz`` archive (read with ``allow_pickle=False``: loading
one runs no code): the arrays, and the rest as JSON. A file is data from
outside the fit, which a disk or a person may have changed without touching
its fingerprint: every field is checked before it is used
(:mod:`._checkpoint_fields`).

One fit at a time uses a path: the fit holds an exclusive lock (``flock``) on
the file ``<path>.lock`` from :func:`open_checkpoint` until
:meth:`FitCheckpoint.close`, and a second fit on the path is refused. The
kernel releases the lock of a killed process; the file it leaves locks nothing.

Processes that each run ``fit`` (MPI ranks) all take part; only
:meth:`Backend.main_process` locks, reads and writes the file, and the others
receive its content.
"""

import contextlib
import hashlib
import json
import numbers
import os
import socket
import weakref
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import _checkpoint_fields as fields
from ._persist import atomic_write
from ._worker import ShardWorker
from .backends._base import CommunicationRecord

try:
    import fcntl
except ImportError:  # Windows has no flock: fits there are not kept apart
    fcntl = None

__all__ = ["FitCheckpoint", "open_checkpoint"]

FORMAT = 1
# Parameters that do not change the model: a fit may resume with other values.
_NOT_IN_FINGERPRINT = ("checkpoint", "checkpoint_every", "verbose", "backend")


# -- the fingerprint ---------------------------------------------------------------
def _digest(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _described_parameters(estimator, shared, continuing, n_workers, curvature):
    """What the model depends on besides the data, as strings by name: the
    parameters, the number of workers and, for a warm start, its model and the
    curvature measured when it was initialized."""
    described = {
        name: value for name, value in shared.items() if name not in _NOT_IN_FINGERPRINT
    }
    random_state = estimator.random_state
    described["random_state"] = (
        random_state if random_state is None or isinstance(random_state, numbers.Integral)
        else type(random_state).__qualname__
    )
    described["n_workers"] = n_workers
    if continuing:  # a warm start continues from the estimator's model
        start = np.append(estimator.coef_, estimator.intercept_).astype(np.float64)
        described["start"] = [
            hashlib.sha256(start.tobytes()).hexdigest(), int(estimator.t_),
            repr(curvature),
        ]
    return {str(k): str(v) for k, v in described.items()}


def _first_difference(saved, described):
    for name in sorted(set(saved) | set(described)):
        if saved.get(name) != described.get(name):
            return f"{name}={described.get(name)} instead of {saved.get(name)}"
    return "the same parameters under another fingerprint"


# A worker's shard as a resumed fit checks it, in one uint8 message: the
# SHA-256 of its rows, then its number of features (uint64, little-endian)
# and the character of its dtype ("f" or "d").
_SHA256_BYTES = 32


def _shard_summary(worker):
    features = np.array([worker.X.shape[1]], dtype="<u8").view(np.uint8)
    kind = np.array([ord(worker.X.dtype.char)], dtype=np.uint8)
    return np.concatenate([worker.fingerprint(), features, kind])


def _model_of(summary, fit_intercept):
    """``(n_values, dtype)`` of the model fitted to the shard of ``summary``."""
    summary = np.asarray(summary, dtype=np.uint8)
    n_features = int(summary[_SHA256_BYTES : _SHA256_BYTES + 8].view("<u8")[0])
    return n_features + int(fit_intercept), np.dtype(chr(summary[_SHA256_BYTES + 8]))


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
    """Write ``content`` to ``path``, atomically; an ``OSError`` (a full disk)
    names the checkpoint and keeps its errno, and leaves ``path`` as it was."""
    arrays = {}
    meta = _split(content, arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    def write(temporary):
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())

    try:
        atomic_write(path, write)
    except OSError as error:
        message = f"cannot write checkpoint {str(path)!r}: {error.strerror or error}"
        # OSError(errno, ...) is the errno's own subclass (PermissionError...).
        raise (
            OSError(error.errno, message) if error.errno is not None else OSError(message)
        ) from error


def _not_a_checkpoint(path, reason):
    return ValueError(
        f"checkpoint {str(path)!r} is not a sklearn_relu checkpoint ({reason}); "
        "remove it to start the fit afresh"
    )


def _arrays(path):
    """Every array of the ``.npz`` archive at ``path``, by name; an entry that
    holds Python objects (which loading would unpickle) is refused unread."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as file:
            start = file.read(4)
        raise _not_a_checkpoint(
            path, "a truncated or damaged .npz archive" if start == b"PK\x03\x04"
            else "not a NumPy .npz archive",
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            objects = [name for name in archive.files
                       if not _holds_numbers(archive.zip, name)]
            if not objects:
                return {name: archive[name] for name in archive.files}
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise _not_a_checkpoint(path, f"a damaged .npz archive: {error}") from None
    raise _not_a_checkpoint(
        path, f"its entry {objects[0]!r} holds Python objects, or is not a NumPy array"
    )


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


def _holds_numbers(archive, name):
    """Whether entry ``name`` of ``archive`` (a zip file) is an array of
    numbers, as its header alone tells."""
    with archive.open(f"{name}.npy") as member:
        reader = _HEADER_READERS.get(np.lib.format.read_magic(member))
        return reader is not None and not reader(member)[2].hasobject


def _read(path):
    """The content of the checkpoint file at ``path``, its fields all there;
    a ``ValueError`` says what is wrong with a file that is not one."""
    try:
        arrays = _arrays(path)
    except OSError as error:  # unreadable (a folder, no permission)
        raise ValueError(
            f"checkpoint {str(path)!r} cannot be read ({error.strerror or error})"
        ) from None
    if "meta" not in arrays:
        raise _not_a_checkpoint(path, "it has no 'meta' entry")
    try:
        content = _join(json.loads(arrays.pop("meta").tobytes().decode()), arrays)
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise _not_a_checkpoint(
            path, f"its 'meta' entry is not the JSON of a checkpoint ({error})"
        ) from None
    found = content.get("format") if isinstance(content, dict) else None
    if found != FORMAT:
        raise ValueError(
            f"checkpoint {str(path)!r} was written in format {found!r}; this version "
            f"reads format {FORMAT}: remove it to start the fit afresh"
        )
    fields.check_layout(path, content)
    return content


# -- one fit at a time on a path ------------------------------------------------------
class _PathLock:
    """The exclusive lock of checkpoint ``path``: ``flock`` on the file
    ``<path>.lock``, held from :meth:`take` to :meth:`release`."""

    def __init__(self, path):
        self.checkpoint = path
        self.path = path.with_name(path.name + ".lock")
        self._fd = self._pid = None

    def take(self):
        """Hold the lock, or raise ``ValueError`` naming the fit that does."""
        if fcntl is None:
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 256).decode(errors="replace").strip()
                os.close(fd)
                raise ValueError(
                    f"checkpoint {str(self.checkpoint)!r} is in use by another fit "
                    f"({holder or 'a process'} holds {str(self.path)!r}); wait for "
                    "it to end, or give this fit another checkpoint path"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The fit that held it may have removed the file between our open
            # and our flock: a lock on a file no other fit can open locks
            # nothing, so open the path again.
            try:
                held = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                held = False
            if held:
                self._fd, self._pid = fd, os.getpid()
                self._sign()
                return
            os.close(fd)

    def _sign(self):
        """Write who holds the lock into its file, for the message of a fit
        refused; a failure (a full disk) leaves it unsigned, still held."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"process {self._pid} on {socket.gethostname()}".encode())

    def release(self):
        """Remove the file, then let go of the lock; once only, and only in
        the process that took it (a forked child that exits must not remove
        its parent's lock)."""
        fd, self._fd = self._fd, None
        if fd is None or os.getpid() != self._pid:
            return
        # Removed while still held: a fit that opened it before sees, once it
        # holds it, that the path no longer names it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(fd)


def _open_on_main(path, described, fingerprint, limits, seeded):
    """``(lock, content, problem)`` on the process that reads the file: the
    path's lock taken (None if not), the checkpoint found there (None if
    none), and why this fit cannot use it (None if it can)."""
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        return None, None, (
            f"checkpoint {str(path)!r}: the folder {str(path.parent)!r} does "
            "not exist or is not writable"
        )
    lock = _PathLock(path)
    try:
        lock.take()
    except (ValueError, OSError) as error:
        return None, None, (
            str(error) if isinstance(error, ValueError)
            else f"checkpoint {str(path)!r}: cannot lock {str(lock.path)!r} ({error})"
        )
    if not path.exists():
        return lock, None, None
    try:
        found = _read(path)
        fields.check_identity(path, found)
        if found["fingerprint"]["parameters"] != fingerprint:
            raise ValueError(
                f"checkpoint {str(path)!r} was written by a fit with other "
                "parameters (or another number of workers, or another starting "
                f"model): this fit has "
                f"{_first_difference(found['parameters'], described)}; it cannot "
                "continue this fit. Remove it, or give this fit another checkpoint "
                "path"
            )
        fields.check_rng_start(path, found["rng_start"], seeded)
        fields.check_progress(path, found, limits)
        fields.check_record(path, found["record"])
        fields.check_worker_rngs(path, found["worker_rngs"], limits.n_workers)
        fields.check_attack(path, found.get("attack_rngs"), found.get("attack_rounds"),
                            limits.n_workers)
    except ValueError as error:
        return lock, None, str(error)
    return lock, found, None


def open_checkpoint(estimator, backend, rng, shared, partial, continuing, n_workers,
                    curvature=None):
    """The fit's :class:`FitCheckpoint`, or None without ``checkpoint``.

    ``n_workers`` is the number the fit runs on; ``curvature`` what a warm
    start's ``learning_rate="auto"`` continues from. Called on every process
    of the fit before ``rng`` is first used: a
    checkpoint of the same parameters sets ``rng`` back to the state the
    interrupted fit started from, one of other parameters is refused. The
    returned checkpoint holds the path's lock until
    :meth:`FitCheckpoint.close`, which the caller must call when the fit
    ends, however it ends.
    """
    if estimator.checkpoint is None:
        return None
    if partial:
        raise ValueError(
            "checkpoint applies to fit; partial_fit runs a single epoch and keeps "
            "its state in the estimator (set checkpoint=None)"
        )
    path = Path(estimator.checkpoint)
    described = backend.common(
        _described_parameters(estimator, shared, continuing, n_workers, curvature)
    )
    fingerprint = _digest(described)
    limits = fields.FitLimits(
        n_runs=1 if continuing else int(estimator.n_ensemble),
        max_iter=int(estimator.max_iter), validating=bool(estimator.early_stopping),
        n_workers=int(n_workers),
    )
    # A seed fixes where the stream starts: a checkpoint of this fit starts there.
    seeded = estimator.random_state
    seeded = rng.get_state() if isinstance(seeded, numbers.Integral) else None
    lock = found = problem = None
    if backend.main_process():
        lock, found, problem = _open_on_main(path, described, fingerprint, limits, seeded)
    try:
        found, problem = backend.common((found, problem))
        if problem:
            raise ValueError(problem)
        if found is not None:
            key, position, has_gauss, cached = found["rng_start"]
            rng.set_state(("MT19937", key, position, has_gauss, cached))
        _, key, position, has_gauss, cached = rng.get_state()
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    rng_start = [key, int(position), int(has_gauss), float(cached)]
    return FitCheckpoint(
        path, estimator.checkpoint_every, backend, fingerprint, described, rng_start,
        found, limits=limits, fit_intercept=bool(estimator.fit_intercept), lock=lock,
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
        The content of the file this fit resumes from, its fields that need
        no data checked (:func:`open_checkpoint`).
    limits : FitLimits
        What the fit bounds the found fields by.
    fit_intercept : bool
        Whether the model has an intercept: its length, with the data's width.
    lock : _PathLock or None
        The path's lock (on the main process), held until :meth:`close`.
    """

    def __init__(self, path, every, backend, fingerprint, described, rng_start, found,
                 *, limits, fit_intercept, lock=None):
        self.path, self.every, self.backend = path, every, backend
        self.fingerprint = {"parameters": fingerprint, "data": None}
        self.described = described
        self.rng_start = rng_start
        self.found = found
        self.finished = [] if found is None else found["finished"]
        self.limits, self.fit_intercept = limits, fit_intercept
        self.model = None  # (n_values, dtype), once check_data has seen the data
        # Released by close(), or, should a caller never call it, when this
        # object is collected or the interpreter exits.
        self._release = weakref.finalize(
            self, lock.release if lock is not None else (lambda: None)
        )

    def check_data(self):
        """Fingerprint every worker's rows (after ``backend.start``); refuse a
        checkpoint of other data, or whose fields do not fit the model."""
        summaries = self.backend.call(_shard_summary)
        digest = hashlib.sha256()
        for summary in summaries:
            digest.update(np.asarray(summary, dtype=np.uint8)[:_SHA256_BYTES].tobytes())
        self.fingerprint["data"] = self.backend.common(digest.hexdigest())
        self.model = _model_of(summaries[0], self.fit_intercept)
        found = self.found
        if found is None:
            return
        if found["fingerprint"]["data"] != self.fingerprint["data"]:
            raise ValueError(
                f"checkpoint {str(self.path)!r} was written by a fit on other data "
                "(other rows, targets, sample weights, dtype or validation split); "
                "it cannot continue this fit. Remove it, or give this fit another "
                "checkpoint path"
            )
        self._check_fields(found)

    def _check_fields(self, found):
        """The found fields that need the model and the workers: refused
        unless they fit them."""
        path, backend, n_workers = self.path, self.backend, self.limits.n_workers
        (n_values, dtype), compressor = self.model, backend.compressor
        fields.check_params(path, found["params"], found["epoch"], n_values, dtype)
        fields.check_finished(path, found["finished"], n_values, dtype, self.limits,
                              compressor)
        fields.check_compressor_states(path, found["compressor_states"], n_workers,
                                       compressor)
        fields.check_aggregator_state(path, found["aggregator_state"], backend.aggregator)
        fields.check_agreed_scale(path, found["agreed_scale"], compressor,
                                  backend.n_summands)
        fields.check_average(path, found.get("average"), n_values)
        fields.check_momentum_states(path, found.get("momentum_states"), n_workers, n_values)

    # -- resuming ------------------------------------------------------------------
    def finished_run(self, run):
        """The result of run ``run`` when the interrupted fit had finished it."""
        return self.finished[run] if run < len(self.finished) else None

    def resume(self, run, rule):
        """Restore run ``run`` where it was saved, after the run's reseed.

        Returns ``(params, epochs done, losses, scores, (average's mean,
        count))``, or None when this run starts from its beginning.
        """
        found = self.found
        if found is None or found["run"] != run:
            return None
        if found["epoch"] > 0:
            fields.check_rule_state(self.path, found["rule"], rule, *self.model,
                                    found["epoch"], found["scores"])
        backend = self.backend
        backend.record = CommunicationRecord(**found["record"])
        if found["epoch"] == 0:
            return None
        backend.call(ShardWorker.restore_random_state, found["worker_rngs"])
        if found.get("attack_rngs") is not None:
            backend.call(ShardWorker.restore_attack_random_state, found["attack_rngs"])
        if found.get("attack_rounds") is not None:
            backend.restore_attack_rounds(found["attack_rounds"])
        if found["compressor_states"] is not None:
            backend.restore_compressor_states(found["compressor_states"])
        if found.get("momentum_states") is not None:
            backend.restore_momentum_states(found["momentum_states"])
        if found["aggregator_state"] is not None:
            backend.aggregator.set_state(found["aggregator_state"])
        # A summable compressor's scale, agreed in the last step for the next.
        scale = found["agreed_scale"]
        backend.agreed_scale = None if scale is None else float(scale)
        rule.set_state(found["rule"])
        average = found.get("average") or {"mean": None, "count": 0}
        return (
            found["params"], found["epoch"], list(found["losses"]),
            None if found["scores"] is None else list(found["scores"]),
            (average["mean"], average["count"]),
        )

    # -- saving --------------------------------------------------------------------
    def due(self, epochs_done):
        return epochs_done % self.every == 0

    def save(self, run, epochs_done, steps_per_epoch, params, rule, losses, scores,
             average=None):
        """Write the state after ``epochs_done`` epochs of run ``run``
        (``average``: the average of its iterates, ``(mean, count)``, when
        the fit keeps one).

        Collective: every process of the fit calls it; one writes.
        """
        backend = self.backend
        worker_rngs = np.array(backend.call(ShardWorker.random_state), dtype=np.uint64)
        attack_rngs = None
        if backend.n_byzantine:  # a Byzantine worker's noise (a random attack)
            attack_rngs = np.array(backend.call(ShardWorker.attack_random_state),
                                   dtype=np.uint64)
        compressor_states = backend.compressor_states()
        momentum_states = backend.momentum_states()
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
            "average": None if average is None else dict(zip(("mean", "count"), average)),
            "momentum_states": momentum_states,
            "attack_rngs": attack_rngs,
            "attack_rounds": backend.attack_rounds(),
        })

    def run_finished(self, run, result, compressor_states, n_runs, momentum_states=None):
        """Keep a finished run of an ensemble (``result`` as a dict, and its
        workers' compressor states and momentum memories); save, so that it is
        not redone."""
        finished = {**result, "compressor_states": compressor_states}
        if momentum_states is not None:
            finished["momentum_states"] = momentum_states
        self.finished.append(finished)
        if run + 1 < n_runs:
            self.save(run + 1, 0, 0, np.zeros(0), None, [], None)

    def remove(self):
        """Delete the file at the end of a fit that completed."""
        if self.backend.main_process():
            self.path.unlink(missing_ok=True)

    def close(self):
        """Let other fits use the path: release its lock and remove the lock
        file. Call it once the fit has ended, whether it completed (after
        :meth:`remove`) or raised; calling it again does nothing."""
        self._release()
