"""The checks a checkpoint's fields pass before a resumed fit uses them.

The fingerprints of a checkpoint say which fit it continues, not that what it
holds is what that fit saved: a damaged or edited file may keep them. So every
field is checked, for its type, its range and its consistency with the fit and
with the other fields, before anything reads it; a field that fails is refused
with a ``ValueError`` naming the file and the field. None reaches NumPy's
generators (a zeroed PCG64 stream is rejected at every bounded draw, forever,
in C), the workers, the compressors or the stopping rule.

Each function checks one concern and raises at the first problem; a fit calls
them as soon as it knows what they compare against (:mod:`._checkpoint`).
"""

import copy
import math
import numbers
from dataclasses import dataclass, fields

import numpy as np

from .backends._base import CommunicationRecord

__all__ = [
    "FitLimits", "check_agreed_scale", "check_aggregator_state", "check_attack",
    "check_average", "check_compressor_states", "check_finished", "check_identity",
    "check_layout", "check_momentum_states",
    "check_params", "check_progress", "check_record", "check_rng_start",
    "check_rule_state", "check_worker_rngs", "refusal",
]

#: The fields a checkpoint holds, exactly.
FIELDS = frozenset({
    "format", "fingerprint", "parameters", "rng_start", "run", "epoch", "t", "params",
    "losses", "scores", "rule", "worker_rngs", "compressor_states", "aggregator_state",
    "agreed_scale", "record", "finished", "average", "momentum_states", "attack_rngs",
    "attack_rounds",
})
# Fields a file written before they were kept may lack (a fit without them).
_OPTIONAL_FIELDS = frozenset({"average", "momentum_states", "attack_rngs", "attack_rounds"})
# A finished run as a checkpoint keeps it; the curves may be missing from a
# file written before they were kept (the fit makes them NaN).
_FINISHED = frozenset({
    "params", "n_iter", "t", "loss_curve", "validation_scores",
    "best_validation_score", "converged", "stopped_by_callback", "compressor_states",
})
# What a finished run keeps besides when the fit averages its iterates, or
# its workers keep a momentum.
_OPTIONAL_FINISHED = ("iterate", "average_count", "momentum_states")
_CURVES = ("steps_curve", "bytes_sent_curve", "seconds_curve")
# The legacy MT19937 state of the estimator's random stream: 624 words.
_MT_WORDS = 624
# A worker's PCG64 stream (ShardWorker.random_state): the state's two 64-bit
# halves, the increment's two, whether a 32-bit half is cached, and that half.
_PCG64_WORDS = 6


@dataclass(frozen=True)
class FitLimits:
    """What the fit resuming a checkpoint bounds its fields by.

    Attributes
    ----------
    n_runs : int
        Runs of the fit (``n_ensemble``; one for a warm start).
    max_iter : int
        Epochs a run may take.
    validating : bool
        Whether each epoch is scored on validation rows (``early_stopping``).
    n_workers : int
    """

    n_runs: int
    max_iter: int
    validating: bool
    n_workers: int


def refusal(path, field, problem, part=""):
    """The ``ValueError`` that refuses ``field`` (its ``part``, such as
    "entry 'n_messages'", where given) of the checkpoint at ``path``."""
    where = f"field {field!r}" + (f" {part}" if part else "")
    return ValueError(
        f"checkpoint {str(path)!r}: {where} {problem}; remove the file to start the "
        "fit afresh"
    )


# -- values -------------------------------------------------------------------------
def _integer(path, field, value, low, high=None, part=""):
    """``value``, a Python or JSON integer in ``[low, high]`` (not a bool)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise refusal(path, field, f"is {value!r}, not an integer", part)
    if value < low or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f"at least {low}"
        raise refusal(path, field, f"is {value}, not {bounds}", part)
    return int(value)


def _real(path, field, value, low=-math.inf, high=math.inf, part=""):
    """``value``, a real number in ``[low, high]`` (infinite only where a bound
    is; never NaN, never a bool)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise refusal(path, field, f"is {value!r}, not a number", part)
    if not low <= value <= high:  # NaN fails both
        raise refusal(path, field, f"is {value!r}, not in [{low}, {high}]", part)
    return float(value)


def _reals(path, field, values, length, low=-math.inf, high=math.inf, nan=False,
           part=""):
    """``values``, a list of ``length`` numbers in ``[low, high]`` (or NaN where
    ``nan``)."""
    if not isinstance(values, list) or len(values) != length:
        held = (
            f"has {len(values)} values" if isinstance(values, list)
            else f"is {values!r}" if values is None else f"is a {type(values).__name__}"
        )
        raise refusal(path, field, f"{held}, not a list of {length}", part)
    for index, value in enumerate(values):
        if not (nan and isinstance(value, float) and math.isnan(value)):
            _real(path, field, value, low, high, f"{part} value {index}".strip())


def _described(value):
    return (
        f"an array of shape {value.shape} and dtype {value.dtype}"
        if isinstance(value, np.ndarray) else f"a {type(value).__name__}"
    )


def _vector(path, field, value, length, dtype, part=""):
    """``value``, a finite 1-D array of ``length`` values of ``dtype``."""
    if not (
        isinstance(value, np.ndarray) and value.dtype == dtype
        and value.shape == (length,)
    ):
        raise refusal(path, field, f"is {_described(value)}, not {length} values of "
                                   f"dtype {np.dtype(dtype)}", part)
    if not np.all(np.isfinite(value)):
        raise refusal(path, field, "holds values that are not finite", part)
    return value


def _mapping(path, field, value, keys, optional=frozenset(), part=""):
    """``value``, a dict whose keys are ``keys`` and any of ``optional``."""
    if not isinstance(value, dict):
        raise refusal(path, field, f"is a {type(value).__name__}, not a mapping", part)
    missing, extra = keys - set(value), set(value) - keys - optional
    if missing or extra:
        raise refusal(
            path, field,
            f"has the entries {sorted(map(str, value))}, not {sorted(keys)}"
            + (f" (and any of {sorted(optional)})" if optional else ""), part,
        )
    return value


# -- the file as a whole --------------------------------------------------------------
def check_layout(path, content):
    """The checkpoint holds exactly :data:`FIELDS`."""
    if not isinstance(content, dict):
        raise refusal(path, "meta", f"is a {type(content).__name__}, not a mapping")
    unknown = sorted(set(content) - FIELDS)
    missing = sorted(FIELDS - _OPTIONAL_FIELDS - set(content))
    if unknown:
        raise refusal(path, unknown[0], "is not a field of a checkpoint")
    if missing:
        raise refusal(path, missing[0], "is missing")


def check_identity(path, content):
    """The fingerprints (two SHA-256 hex digests) and the parameters behind
    them (strings by name): what a fit compares before anything else."""
    fingerprint = _mapping(path, "fingerprint", content["fingerprint"],
                           frozenset({"parameters", "data"}))
    for name, digest in fingerprint.items():
        if not (
            isinstance(digest, str) and len(digest) == 64
            and set(digest) <= set("0123456789abcdef")
        ):
            raise refusal(path, "fingerprint", f"has {name}={digest!r}, not a SHA-256")
    parameters = content["parameters"]
    if not isinstance(parameters, dict) or not all(
        isinstance(value, str) for value in parameters.values()
    ):
        raise refusal(path, "parameters", "is not a mapping of names to strings")


def check_rng_start(path, rng_start, seeded):
    """The estimator's random stream at the start of the fit, a legacy MT19937
    state ``[key, position, has_gauss, cached]``.

    ``seeded`` is the stream the fit has made from an integer ``random_state``
    (or None): a fit with a seed starts where every fit of that seed does.
    """
    if not isinstance(rng_start, list) or len(rng_start) != 4:
        raise refusal(path, "rng_start", "is not [key, position, has_gauss, cached]")
    key, position, has_gauss, cached = rng_start
    if not (
        isinstance(key, np.ndarray) and key.dtype == np.uint32
        and key.shape == (_MT_WORDS,)
    ):
        raise refusal(path, "rng_start", f"has a key that is not {_MT_WORDS} uint32")
    if not key.any():  # MT19937 stays at zero forever from there
        raise refusal(path, "rng_start", "has a key of zeros, a state MT19937 never has")
    _integer(path, "rng_start", position, 0, _MT_WORDS, part="position")
    _integer(path, "rng_start", has_gauss, 0, 1, part="has_gauss")
    _real(path, "rng_start", cached, part="cached value")
    if seeded is not None and not (
        np.array_equal(key, seeded[1]) and position == seeded[2]
        and has_gauss == seeded[3] and cached == seeded[4]
    ):
        raise refusal(
            path, "rng_start", "is not where the stream of this fit's random_state starts"
        )


# -- where the fit was ------------------------------------------------------------------
def check_progress(path, content, limits):
    """The run and epoch the checkpoint was written after, and what they
    imply: the steps, the epochs' losses and validation scores, the finished
    runs before this one, a stopping rule's state after a run's first epoch."""
    run = _integer(path, "run", content["run"], 0, limits.n_runs - 1)
    epoch = _integer(path, "epoch", content["epoch"], 0, limits.max_iter - 1)
    # Epoch 0 is the start of a run after one that finished (never the first).
    if epoch == 0 and run == 0:
        raise refusal(path, "epoch", "is 0 in the first run, where nothing was saved")
    t = _integer(path, "t", content["t"], 0)
    if (t == 0) != (epoch == 0) or (epoch and t % epoch):
        raise refusal(path, "t", f"is {t}, not a whole number of steps an epoch for "
                                 f"{epoch} epochs")
    # The losses may be negative or -inf where Byzantine workers send the
    # statistics; never NaN or +inf, where the fit stops.
    _reals(path, "losses", content["losses"], epoch, high=np.finfo(np.float64).max)
    if limits.validating and epoch:
        _reals(path, "scores", content["scores"], epoch, high=1.0)
    elif content["scores"] is not None:
        raise refusal(path, "scores", "is not None, but no epoch of this fit was scored "
                                      "(early_stopping=False, or no epoch yet)")
    if (content["rule"] is None) != (epoch == 0):
        raise refusal(path, "rule", "is missing after an epoch" if epoch
                      else "is a state before the run's first epoch")
    finished = content["finished"]
    if not isinstance(finished, list) or len(finished) != run:
        held = f"has {len(finished)}" if isinstance(finished, list) else "is not a list of"
        raise refusal(path, "finished", f"{held} run(s), where run {run} is the one "
                                        f"in progress: not the {run} before it")


def check_record(path, record):
    """The communication record: every count of
    :class:`~sklearn_relu.backends.CommunicationRecord`, none other, each a
    non-negative number of its type."""
    kinds = {field.name: type(field.default) for field in fields(CommunicationRecord)}
    # Rounds were not counted by the files of earlier releases.
    _mapping(path, "record", record, frozenset(kinds) - {"n_rounds"}, {"n_rounds"})
    kinds = {name: kind for name, kind in kinds.items() if name in record}
    for name, kind in kinds.items():
        part = f"entry {name!r}"
        if kind is int:
            _integer(path, "record", record[name], 0, part=part)
        else:
            _real(path, "record", record[name], 0, np.finfo(np.float64).max, part)


def check_attack(path, rngs, rounds, n_workers):
    """The attack's streams (``attack_rngs``: None, or as ``worker_rngs``) and
    the omniscient attack's rounds so far (``attack_rounds``: None, or two
    non-negative integers, statistics' and vectors')."""
    if rngs is not None:
        check_worker_rngs(path, rngs, n_workers, "attack_rngs")
    if rounds is not None:
        if not isinstance(rounds, list) or len(rounds) != 2:
            raise refusal(path, "attack_rounds", f"is {rounds!r}, not two counts")
        for index, count in enumerate(rounds):
            _integer(path, "attack_rounds", count, 0, part=f"entry {index}")


def check_worker_rngs(path, states, n_workers, field="worker_rngs"):
    """Every worker's PCG64 stream, ``(n_workers, 6)`` uint64
    (:meth:`~sklearn_relu._worker.ShardWorker.random_state`), each a state that
    NumPy's PCG64 can be in: an odd increment (a zeroed state has none) and a
    cached half of 32 bits."""
    if not (
        isinstance(states, np.ndarray) and states.dtype == np.uint64
        and states.shape == (n_workers, _PCG64_WORDS)
    ):
        raise refusal(path, field, f"is {_described(states)}, not ({n_workers}, "
                                           f"{_PCG64_WORDS}) uint64: one row a worker")
    # As Python ints: NumPy before 2.0 refuses uint64 & int (no safe common type).
    for index, (_, _, _, inc_low, has_uint32, uinteger) in enumerate(states.tolist()):
        if not inc_low & 1:
            what = "is all zeros" if not states[index].any() else "has an even increment"
            raise refusal(path, field, f"{what}, not a state NumPy's PCG64 can "
                                               "be in", f"row {index}")
        if has_uint32 > 1 or uinteger >> 32:
            raise refusal(path, field, "caches no 32-bit value", f"row {index}")


# -- what the run holds: checked once the fit knows its model ---------------------------
def check_params(path, params, epoch, n_values, dtype):
    """The run's parameters: none at a run's start (epoch 0), else the
    model's ``n_values`` in the data's ``dtype``, finite."""
    if epoch == 0:
        _vector(path, "params", params, 0, np.float64)
    else:
        _vector(path, "params", params, n_values, dtype)


def check_finished(path, finished, n_values, dtype, limits, compressor):
    """The runs of an ensemble already finished, as
    :meth:`~sklearn_relu._checkpoint.FitCheckpoint.run_finished` kept them."""
    largest = np.finfo(np.float64).max
    for index, run in enumerate(finished):
        part = f"run {index}"
        _mapping(path, "finished", run, _FINISHED, frozenset(_CURVES + _OPTIONAL_FINISHED), part)
        _vector(path, "finished", run["params"], n_values, dtype, f"{part} params")
        n_iter = _integer(path, "finished", run["n_iter"], 1, limits.max_iter,
                          f"{part} n_iter")
        _integer(path, "finished", run["t"], n_iter, part=f"{part} t")
        _reals(path, "finished", run["loss_curve"], n_iter, high=largest,
               part=f"{part} loss_curve")
        # NaN: the bytes and seconds of epochs a resumed run did not see.
        for name in set(_CURVES) & set(run):
            _reals(path, "finished", run[name], n_iter, 0, nan=True, part=f"{part} {name}")
        if limits.validating:
            _reals(path, "finished", run["validation_scores"], n_iter, high=1.0,
                   part=f"{part} validation_scores")
            _real(path, "finished", run["best_validation_score"], high=1.0,
                  part=f"{part} best_validation_score")
        elif (run["validation_scores"], run["best_validation_score"]) != (None, None):
            raise refusal(path, "finished", "has validation scores, but this fit "
                                            "scores no epoch", part)
        if not isinstance(run["converged"], bool):
            raise refusal(path, "finished", "converged is not a bool", part)
        # A run the callback stopped ends the fit: it is never kept to resume.
        if run["stopped_by_callback"] is not False:
            raise refusal(path, "finished", "stopped_by_callback is not False", part)
        check_compressor_states(path, run["compressor_states"], limits.n_workers,
                                compressor, "finished", f"{part} compressor_states")
        if run.get("iterate") is not None:
            _vector(path, "finished", run["iterate"], n_values, dtype, f"{part} iterate")
        _integer(path, "finished", run.get("average_count", 0), 0, part=f"{part} average_count")
        check_momentum_states(path, run.get("momentum_states"), limits.n_workers, n_values,
                              "finished", f"{part} momentum_states")


def check_momentum_states(path, states, n_workers, n_values, field="momentum_states",
                          part=""):
    """Every worker's momentum memory (``worker_momentum``): None, or
    ``(n_workers, n_values)`` finite float64."""
    if states is None:
        return
    if not (
        isinstance(states, np.ndarray) and states.dtype == np.float64
        and states.shape == (n_workers, n_values)
    ):
        raise refusal(path, field, f"is {_described(states)}, not ({n_workers}, {n_values}) "
                                   "float64: one memory a worker", part)
    if not np.all(np.isfinite(states)):
        raise refusal(path, field, "holds values that are not finite", part)


def check_average(path, average, n_values):
    """The average of the iterates (``average=...``): None, or ``{"mean",
    "count"}``, a mean of the model's ``n_values`` (float64) over ``count``
    iterates, or None before the first."""
    if average is None:
        return
    _mapping(path, "average", average, frozenset({"mean", "count"}))
    count = _integer(path, "average", average["count"], 0, part="entry 'count'")
    if count == 0:
        if average["mean"] is not None:
            raise refusal(path, "average", "has a mean of no iterate", "entry 'mean'")
        return
    _vector(path, "average", average["mean"], n_values, np.float64, "entry 'mean'")


def check_compressor_states(path, states, n_workers, compressor,
                            field="compressor_states", part=""):
    """Every worker's compressor state (error-feedback memory, momentum):
    None for a stateless compressor, else ``(n_workers, k)`` finite float64,
    each row a state ``compressor`` gives back as it took it."""
    if not compressor.stateful:
        if states is not None:
            raise refusal(path, field, f"holds states, but {compressor!r} keeps none",
                          part)
        return
    if not (
        isinstance(states, np.ndarray) and states.dtype == np.float64
        and states.ndim == 2 and states.shape[0] == n_workers
    ):
        raise refusal(path, field, f"is {_described(states)}, not one float64 row "
                                   f"for each of {n_workers} workers", part)
    if not np.all(np.isfinite(states)):
        raise refusal(path, field, "holds values that are not finite", part)
    for index, state in enumerate(states):
        _round_trip(path, field, copy.deepcopy(compressor), state,
                    f"{part} row {index}".strip())


def check_aggregator_state(path, state, aggregator):
    """The aggregator's memory (BGMD's, a pre-aggregation's step count): a
    state ``aggregator`` gives back as it took it, or None where it keeps
    none yet."""
    fresh = copy.deepcopy(aggregator)
    fresh.reset()
    if state is None:
        if fresh.get_state() is not None:
            raise refusal(path, "aggregator_state", f"is missing, but {aggregator!r} "
                                                    "always keeps one")
        return
    if not (isinstance(state, np.ndarray) and state.dtype == np.float64
            and state.ndim == 1):
        raise refusal(path, "aggregator_state", f"is {_described(state)}, not a 1-D "
                                                "float64 array")
    if not np.all(np.isfinite(state)):
        raise refusal(path, "aggregator_state", "holds values that are not finite")
    _round_trip(path, "aggregator_state", fresh, state)


def _round_trip(path, field, owner, state, part=""):
    """Hand ``state`` to ``owner`` (a copy of the fit's compressor or
    aggregator) and refuse it unless ``owner`` takes it and gives it back."""
    try:
        owner.set_state(state)
        back = owner.get_state()
    except Exception as error:  # whatever the owner's set_state refuses it with
        problem = f"is not a state of {owner!r} ({error})"
        raise refusal(path, field, problem, part) from None
    if back is None or not np.array_equal(np.asarray(back, dtype=np.float64), state):
        raise refusal(path, field, f"is not a state {owner!r} keeps", part)


def check_agreed_scale(path, scale, compressor, n_summands):
    """The scale a summable compressor (IntSGD) agreed on for the next step,
    or None (agree on the exact one first). One it agrees on is positive
    (a zero scale makes it agree afresh), and the sum of ``n_summands``
    vectors on it is finite."""
    if scale is None:
        return
    if not (compressor.summable and compressor.needs_scale):
        raise refusal(path, "agreed_scale", f"is {scale!r}, but {compressor!r} agrees "
                                            "on no scale")
    largest = np.finfo(np.float64).max / n_summands
    scale = _real(path, "agreed_scale", scale)
    if not 0 < scale <= largest:
        raise refusal(path, "agreed_scale", f"is {scale!r}, not in (0, {largest:.6g}]: "
                                            f"a scale {n_summands} workers can agree on")


# Each entry of a stopping rule's state (:mod:`._stopping`) and its check:
# ``check(path, value, model, part)``, ``model = (n_values, dtype, epoch)``.
def _count(path, value, model, part):
    _integer(path, "rule", value, 0, model[2], part)


def _loss(path, value, model, part):
    # Infinite before the rule's first epoch; never NaN.
    _real(path, "rule", value, part=part)


def _score(path, value, model, part):
    _real(path, "rule", value, high=1.0, part=part)


def _optional_params(path, value, model, part):
    if value is not None:
        _vector(path, "rule", value, model[0], model[1], part)


def _window_sum(path, value, model, part):
    # 0.0 for an empty window, else the sum of its parameters in float64.
    if not (isinstance(value, float) and value == 0.0):
        _vector(path, "rule", value, model[0], np.float64, part)


_RULE_ENTRIES = {
    "checked_loss": _loss, "best_epoch_loss": _loss, "no_change": _count,
    "_window_size": _count, "best_params": _optional_params, "_window_sum": _window_sum,
    "best_score": _score,
}


def check_rule_state(path, state, rule, n_values, dtype, epoch, scores):
    """The stopping rule's state after ``epoch`` epochs: the entries of
    ``rule``'s own state, each of its type and range, and consistent with
    each other and with the epochs' validation ``scores``."""
    expected = rule.get_state()
    _mapping(path, "rule", state, frozenset(expected))
    for name in expected:
        check = _RULE_ENTRIES.get(name)
        if check is None:  # a rule this version cannot check: refuse, not trust
            raise refusal(path, "rule", f"has the entry {name!r}, which this version "
                                        "cannot check")
        check(path, state[name], (n_values, dtype, epoch), f"entry {name!r}")
    if "_window_size" in state and (state["_window_size"] == 0) != (
        isinstance(state["_window_sum"], float)
    ):
        raise refusal(path, "rule", "has a window sum that does not match its size")
    if "best_score" in state and scores:
        # The rule sees every epoch's score, keeps the best and its parameters.
        best = state["best_score"]
        if best != max(scores) or (state["best_params"] is None) != (best == -math.inf):
            raise refusal(path, "rule", f"has the best score {best!r}, not the best "
                                        f"of the scores, {max(scores)!r}, with its "
                                        "parameters")
