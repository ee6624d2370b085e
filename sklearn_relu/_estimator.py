"""ReLURegressor: fit ``max(0, <w, x> + b)`` by SGD or quantized SGD."""

import functools
import hashlib
import logging
import math
import numbers
import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ._checkpoint import check_checkpoint_params, open_checkpoint
from ._ensemble import select_consistent_run
from ._gradient import divergence_error, split_params
from ._init import check_init, initial_params
from ._parallel import blas_beside_steps
from ._schedule import ConstantStep, HalvingStep, initial_sign_step
from ._stall import stalled_parameters
from ._step_size import auto_learning_rate, measure_curvature
from ._steps import SGDUpdate
from ._stopping import LossPlateau, ValidationPlateau
from ._worker import ShardWorker, TrainingSet, shard_statistic
from .aggregation import get_aggregator
from .attacks import get_attack
from .backends import get_backend
from .compression import check_quantizer_params, get_compressor

__all__ = ["ReLURegressor", "StepInfo"]

logger = logging.getLogger("sklearn_relu")


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
        ``partial_fit`` calls.
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


class _StepNotifier:
    """Calls ``callback`` with a :class:`StepInfo` after every step of a run
    (through ``Backend.run_steps``'s ``after_step``) and says whether the fit
    stops there; under MPI the ranks' answers are combined (any one stops all)."""

    def __init__(self, callback, backend, run, step, epoch):
        self.callback, self.backend, self.run = callback, backend, run
        self.step, self.epoch = step, epoch
        self.stopped = False

    def after_step(self, params):
        self.step += 1
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


def _sgd_update(learning_rate, first=0):
    """The step ``params - learning_rate.at(t) * direction`` at the ``t``-th call,
    counting from ``first`` (a schedule from :mod:`._schedule`), checked; an
    object the in-process backend's compiled loop can read."""
    return SGDUpdate(learning_rate, first)


def _check_int(name, value, low, allow_none=False):
    if allow_none and value is None:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer >= {low}{extra}, got {value!r}")


class ReLURegressor(RegressorMixin, BaseEstimator):
    """Fit a single ReLU ``max(0, <w, x> + b)`` by mini-batch SGD or QSGD.

    Implements "Fitting ReLUs via SGD and Quantized SGD" (Kalan, Soltanolkotabi,
    Avestimehr, 2019): a spectral start (one full gradient step from zero with an
    exact line search), then mini-batch SGD on the squared loss. The batch is
    split across ``n_workers`` workers, each drawing its share from its own shard
    of the data; with ``solver="qsgd"`` each worker sends its partial gradient
    stochastically quantized to ``bits`` bits a coordinate.

    Parameters
    ----------
    solver : {"sgd", "qsgd", "intsgd", "signsgd", "signum", "terngrad", "topk"} \
            or Compressor, default="sgd"
        ``"sgd"`` sends exact gradients; ``"qsgd"`` quantizes them (QSGD);
        ``"intsgd"`` rounds them to integers on a scale all workers share, so
        that MPI's integer ``Allreduce`` can sum them
        (:class:`~sklearn_relu.compression.IntSGD`); ``"signsgd"`` sends one
        sign bit a coordinate (:class:`~sklearn_relu.compression.SignSGD`),
        ``"signum"`` the sign of the worker's momentum
        (:class:`~sklearn_relu.compression.Signum`); ``"terngrad"`` a scale and
        a ternary level a coordinate
        (:class:`~sklearn_relu.compression.TernGrad`); ``"topk"`` the ``k``
        largest coordinates (:class:`~sklearn_relu.compression.TopK`). A name
        registered with
        :func:`~sklearn_relu.compression.register_compressor`, or a
        :class:`~sklearn_relu.compression.Compressor` instance.
    bits : int, default=8
        Bits per coordinate. ``solver="qsgd"``: in ``[2, 16]``, one sign bit
        and ``bits - 1`` magnitude bits, so ``s = 2**(bits-1) - 1`` levels.
        ``solver="intsgd"``: 8, 16 or 32, the integer type on the wire.
    bucket_size : int or None, default=None
        Coordinates sharing one norm in QSGD; ``None`` uses the whole vector.
    encoding : {"packed", "elias"}, default="packed"
        QSGD wire format: ``bits`` bits per coordinate, or QSGD's Elias coding
        of the nonzero levels (much smaller at few bits, size varies).
    momentum : float, default=0.9
        ``solver="signum"``: the workers' momentum, in ``[0, 1)``.
    k : int or float, default=0.1
        ``solver="topk"``: coordinates each worker sends, an integer ``>= 1``
        or a fraction of them in ``(0, 1]``.
    error_feedback : bool, default=False
        For the biased solvers ``"signsgd"`` and ``"topk"``: each worker adds
        what it could not send to its next gradient
        (:class:`~sklearn_relu.compression.ErrorFeedback`). With
        ``"signsgd"`` it sends the scaled sign ``||p||_1 / d * sign(p)``
        (EF-signSGD), a step in gradient units.
    aggregation : {"mean", "majority", "geometric_median", "bgmd", "median", \
            "trimmed_mean", "krum", "centered_clip"} or Aggregator, default="mean"
        How the workers' decoded vectors combine: their mean (for gradients,
        the batch gradient), or ``"majority"``, the sign of their sum (with
        signs, a majority vote; a tie votes +1), or a Byzantine-robust rule:
        the geometric median, its block-coordinate version with memory
        (BGMD), the coordinate-wise median or trimmed mean, Krum, or centered
        clipping. A robust rule combines the workers' start statistics too.
        See :mod:`sklearn_relu.aggregation` and :doc:`/robust`.
    n_byzantine : int, default=0
        Workers ``0 .. n_byzantine - 1`` are Byzantine: they send ``attack``'s
        version of every vector (gradients, before their compressor encodes
        them, and their start statistics and losses). Must be below the
        number the ``aggregation`` rule withstands (its breakdown point);
        with ``"mean"``, which withstands none, a fit warns.
    attack : {"sign_flip", "scaled", "gaussian", "zero", "alie", "ipm", \
            "optimal_alie", "optimal_ipm", "mimic", "label_flip"}, Attack or \
            callable, default="sign_flip"
        What the Byzantine workers send: ``-g``, ``-4 g``, ``N(0, 100^2)``
        noise a coordinate, zeros, an :class:`~sklearn_relu.attacks.Attack`
        (``Scaled(c=10)``), or ``attack(vector, rng) -> vector`` with the
        worker's own random generator. The omniscient attacks read the honest
        workers' vectors of the step (ALIE, IPM, their forms searched against
        the rule in use, Mimic); ``"label_flip"`` trains on ``-y``. See
        :ref:`robust-attacks`. Unused when ``n_byzantine=0``.
    shards : None or splitter, default=None
        How the training rows are dealt to the workers. ``None``: equal
        contiguous blocks in row order. A splitter, an object with
        ``split(X, y, n_workers)`` returning one array of row indices a
        worker (a partition into non-empty shards), such as
        :class:`~sklearn_relu.DirichletShards` for heterogeneous shards. Not
        with :class:`~sklearn_relu.backends.MPIBackend`, where each rank's
        shard is its own (``data="local"``).
    batch_size : int or "auto", default="auto"
        Points per step over all workers; ``"auto"`` is ``min(200, n_samples)``.
        Larger values are clipped to the number of training samples.
    learning_rate : "auto" or float, default="auto"
        Step size: constant, except where the step direction is a sign
        (``"signsgd"`` or ``"signum"`` without error feedback, or
        ``aggregation="majority"``): a sign step halves every 100 steps,
        ``learning_rate * 2 ** (-t / 100)`` at step ``t`` (``t`` counts on
        through warm starts), since at a constant step a sign method stalls at
        about that step's distance from the optimum. Its ``"auto"`` first
        step moves the model as far as an exact gradient step at the
        ``"auto"`` step size: ``mu ||grad L(w_0)|| / sqrt(p)`` per coordinate
        for ``p`` parameters. For gradients, ``"auto"`` measures the
        curvature at the initial point: ``1 / (lambda_max(H) + R / m)``, ``R``
        the mean squared row norm (weighted by ``s^2`` with sample weights,
        whose noise grows so), which is ``2m / (m + 2d)`` on standardized
        Gaussian data. A compressor with variance factor ``delta`` (QSGD,
        IntSGD, TernGrad; with error feedback ``(1 - delta') / delta'``, the
        share ``delta'`` of the vector it keeps) makes it
        ``1 / ((1 + delta / W) lambda_max(H) + (1 + delta) R / m)`` with ``W``
        workers: compression noise adds to each worker's sampling noise.
    max_iter : int, default=200
        Maximum number of epochs (passes of ``n_samples`` points) per run.
    tol : float or None, default=1e-4
        Training stops when the fit has stalled: the epoch's mean batch loss
        has not fallen below ``(1 - tol)`` times its best for
        ``n_iter_no_change`` epochs, *and* the exact training loss of the mean
        parameters of those epochs is not below ``(1 - tol)`` times that of the
        previous such window. The noisy epoch loss only proposes a stop (see
        :ref:`theory-stopping`); the fit then keeps the window's mean parameters or the
        last ones, whichever fits better. The criterion is relative, so the
        default suits any scale of ``y``. Training also stops once the loss is
        at the rounding floor of the dtype (``(100 eps)^2`` times the loss of
        the zero model): the fit is exact. ``None`` runs all ``max_iter``
        epochs. A fit that ends worse than predicting the mean of ``y`` raises
        a ``ConvergenceWarning`` naming the likely cause.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping.
    init : {"spectral", "zeros", "random"} or array of shape (n_features,), \
            default="spectral"
        Initial coefficients. ``"spectral"`` takes one full gradient step from
        zero along ``X^T y`` with an exact line search; ``"random"`` a random
        direction with the same line search.
    n_ensemble : int, default=1
        Independent runs from the same start; the output is the run that most
        other runs agree with (the paper's ensemble rule).
    fit_intercept : bool, default=True
        Whether to fit ``b``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop when its R^2 has not
        improved by ``tol`` for ``n_iter_no_change`` epochs, and restore the best
        weights seen.
    validation_fraction : float, default=0.1
        Share of the data held out for early stopping, in ``(0, 1)``.
    n_workers : int or None, default=None
        Workers the data and each batch are split across. ``None`` uses as many
        as the backend has: one in-process, the ``n_jobs`` of
        ``joblib.parallel_config`` (default: all CPUs) on joblib, the number of
        ranks on MPI (where any other count is an error).
    backend : {"inprocess", "joblib", "mpi"} or Backend, default="inprocess"
        Where the workers run: one after another in this process, as joblib
        tasks (under the active ``joblib.parallel_config``: loky, threads,
        Dask), or one per MPI rank (every rank calls ``fit``; needs
        ``pip install "sklearn-relu[mpi]"``). All give the same model for the
        same ``random_state`` and ``n_workers``. See
        :mod:`sklearn_relu.backends`.
    random_state : int, RandomState instance or None, default=None
        Seeds batch sampling, quantization, the validation split and ``init``.
    verbose : int, default=0
        Log one line per epoch to the ``"sklearn_relu"`` logger when positive.
    warm_start : bool, default=False
        Start from the previous ``coef_``. With ``learning_rate="auto"`` the
        curvature measured at the first fit is kept and the step recomputed
        from it for this call's batch size, solver and workers; a number given
        since takes effect. Each worker's compressor state (error-feedback
        memory, momentum) continues too, when the solver and the number of
        workers are unchanged; so does it between ``partial_fit`` calls.
    checkpoint : str, path-like or None, default=None
        A file where ``fit`` saves its state every ``checkpoint_every`` epochs,
        atomically: the model, the step counters, curves and stopping rule,
        every worker's random stream and compressor state, the aggregator's
        state, and fingerprints of the data and parameters. If the file exists
        when ``fit`` starts, the fit resumes from it and ends with the model an
        uninterrupted fit would have, to the last bit; the file is removed when
        the fit completes. A file written by a fit of other data or other
        parameters is refused (``ValueError``). Under MPI only rank 0 reads and
        writes it. Not for ``partial_fit``. See :ref:`checkpoints`.
    checkpoint_every : int, default=1
        Epochs between checkpoints; a killed fit redoes at most this many.
    callback : callable or None, default=None
        ``callback(info)`` is called once at the start of each run and after
        every SGD step, with a :class:`StepInfo`: the ``run``, the ``step``
        and ``epoch`` counts, the read-only ``params`` after the step, and
        the ``bytes_sent`` and ``n_messages`` of ``comm_record_`` so far. If
        it returns a true value the fit stops there: that step's parameters
        are the model (not the stopping rule's window mean or best
        validated ones), ``t_`` and ``n_iter_`` count the steps and epochs
        taken up to it (the last epoch partly), no further run of the
        ensemble starts, and ``stopped_by_callback_`` is True. The steps are
        then taken one at a time (the in-process backend's compiled loop
        does not run), with the same model otherwise. Under MPI every rank
        calls its own callback and the fit stops where any rank's returns
        true (one collective a step). Not part of what the ranks compare, or
        of a checkpoint's fingerprint.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Fitted weights ``w``, in the dtype of ``X`` (float32 stays float32).
    intercept_ : float
        Fitted ``b`` (0.0 when ``fit_intercept=False``).
    n_iter_ : int
        Epochs run by the selected run.
    t_ : int
        SGD steps taken by the selected run.
    loss_curve_ : list of float
        Mean batch loss of each epoch of the selected run.
    steps_curve_ : list of int
        SGD steps of the selected run from its start to the end of each epoch
        (the entries of ``loss_curve_``): ``t_`` at the last; a ``warm_start``
        or ``partial_fit`` goes on from the last. What
        :class:`~sklearn_relu.ConvergenceDisplay` plots the loss against.
    bytes_sent_curve_ : list of int
        The bytes of the selected run's gradient messages (as
        ``comm_record_.bytes_sent`` counts them), the same way. NaN for the
        epochs of a run resumed from a ``checkpoint`` (the file keeps the
        losses only).
    seconds_curve_ : list of float
        Wall time of the selected run, the same way (NaN where the bytes are).
    validation_scores_ : list of float or None
        Validation R^2 per epoch when ``early_stopping``.
    best_validation_score_ : float or None
        Best validation R^2 when ``early_stopping``.
    learning_rate_ : float
        The step size used; for a sign direction, the schedule's first step.
    n_workers_ : int
        The number of workers the fit ran on.
    ensemble_coef_ : ndarray of shape (n_ensemble, n_features)
        Coefficients of every run.
    comm_record_ : CommunicationRecord
        What the workers sent: messages, bytes on the wire, the bytes the same
        messages take as float64, and compute versus communication time.
    stopped_by_callback_ : bool
        Whether the ``callback`` stopped the fit.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string column names.

    See Also
    --------
    sklearn.linear_model.SGDRegressor : Linear models fitted by SGD.
    sklearn_relu.compression.QSGD : The quantizer used by ``solver="qsgd"``.

    Examples
    --------
    >>> from sklearn_relu import ReLURegressor, make_relu_regression
    >>> X, y, w = make_relu_regression(n_samples=2000, n_features=20, coef=True,
    ...                                random_state=0)
    >>> est = ReLURegressor(solver="qsgd", bits=8, fit_intercept=False,
    ...                     random_state=0).fit(X, y)
    >>> import numpy as np
    >>> bool(np.linalg.norm(est.coef_ - w) / np.linalg.norm(w) < 1e-6)
    True
    >>> round(est.comm_record_.compression_ratio, 2)  # 20 bytes + 16 of header
    4.44

    A callback sees every step and may stop the fit; here at relative error
    1e-3, whose parameters are then the model:

    >>> def close_enough(info):
    ...     coef = info.params[:20]
    ...     return np.linalg.norm(coef - w) <= 1e-3 * np.linalg.norm(w)
    >>> est = ReLURegressor(fit_intercept=False, random_state=0,
    ...                     callback=close_enough).fit(X, y)
    >>> est.stopped_by_callback_, est.t_ < 200
    (True, True)
    >>> bool(np.linalg.norm(est.coef_ - w) <= 1e-3 * np.linalg.norm(w))
    True
    """

    def __init__(
        self,
        *,
        solver="sgd",
        bits=8,
        bucket_size=None,
        encoding="packed",
        momentum=0.9,
        k=0.1,
        error_feedback=False,
        aggregation="mean",
        n_byzantine=0,
        attack="sign_flip",
        shards=None,
        batch_size="auto",
        learning_rate="auto",
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=5,
        init="spectral",
        n_ensemble=1,
        fit_intercept=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_workers=None,
        backend="inprocess",
        random_state=None,
        verbose=0,
        warm_start=False,
        checkpoint=None,
        checkpoint_every=1,
        callback=None,
    ):
        self.solver = solver
        self.bits = bits
        self.bucket_size = bucket_size
        self.encoding = encoding
        self.momentum = momentum
        self.k = k
        self.error_feedback = error_feedback
        self.aggregation = aggregation
        self.n_byzantine = n_byzantine
        self.attack = attack
        self.shards = shards
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.init = init
        self.n_ensemble = n_ensemble
        self.fit_intercept = fit_intercept
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_workers = n_workers
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.callback = callback

    # -- public API -------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Fit the ReLU to ``X``, ``y`` by (quantized) mini-batch SGD.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the squared loss.

        Returns
        -------
        self : ReLURegressor
        """
        return self._fit(X, y, sample_weight, partial=False)

    def partial_fit(self, X, y, sample_weight=None):
        """Run one epoch of SGD on ``X``, ``y``, starting from the current model.

        The first call initializes the model (``init``) and the step size from
        this data; later calls continue from them.

        Returns
        -------
        self : ReLURegressor
        """
        return self._fit(X, y, sample_weight, partial=True)

    def predict(self, X):
        """Predict ``max(0, X @ coef_ + intercept_)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return np.maximum(X @ self.coef_.astype(X.dtype) + self.intercept_, 0)

    def __sklearn_is_fitted__(self):
        # A fit that raised (a diverging step size) may have set n_features_in_
        # but never coef_: such an estimator is not fitted.
        return hasattr(self, "coef_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # One ReLU cannot reach the R^2 the generic regressor check demands on
        # linear data with negative targets.
        tags.regressor_tags.poor_score = True
        return tags

    # -- validation ---------------------------------------------------------------
    def _validate_params(self):
        # error_feedback before the solver's factory reads it.
        if not isinstance(self.error_feedback, (bool, np.bool_)):
            raise ValueError(
                f"error_feedback must be True or False, got {self.error_feedback!r}"
            )
        compressor = get_compressor(self.solver, self)
        # bits, bucket_size and encoding are checked whatever the solver, so
        # that a bad value is reported even where it is not used yet. A
        # compressor that reads bits (QSGD: 2..16, IntSGD: 8, 16 or 32) checked
        # it when it was built; for the others, QSGD's range applies.
        inner = getattr(compressor, "compressor", compressor)  # error feedback's
        reads_bits = getattr(inner, "bits", None) is not None
        check_quantizer_params(
            bits=None if reads_bits else self.bits,
            bucket_size=self.bucket_size, encoding=self.encoding,
        )
        for name in ("fit_intercept", "early_stopping", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(
                    f"{name} must be True or False, got {getattr(self, name)!r}"
                )
        if self.batch_size != "auto":
            _check_int("batch_size", self.batch_size, 1)
        lr = self.learning_rate
        if not (
            lr == "auto"
            if isinstance(lr, str)
            else isinstance(lr, numbers.Real) and math.isfinite(lr) and lr > 0
        ):
            raise ValueError(
                f"learning_rate must be 'auto' or a positive finite float, got {lr!r}"
            )
        _check_int("max_iter", self.max_iter, 1)
        if self.tol is not None and not (
            isinstance(self.tol, numbers.Real) and 0 <= self.tol < 1
        ):
            raise ValueError(f"tol must be None or a float in [0, 1), got {self.tol!r}")
        _check_int("n_iter_no_change", self.n_iter_no_change, 1)
        _check_int("n_ensemble", self.n_ensemble, 1)
        _check_int("n_workers", self.n_workers, 1, allow_none=True)
        _check_int("n_byzantine", self.n_byzantine, 0)
        get_attack(self.attack)
        if self.shards is not None and not callable(getattr(self.shards, "split", None)):
            raise ValueError(
                "shards must be None or a splitter with a split(X, y, n_workers) "
                f"method, such as DirichletShards(alpha=1.0), got {self.shards!r}"
            )
        if not (
            isinstance(self.validation_fraction, numbers.Real)
            and 0 < self.validation_fraction < 1
        ):
            raise ValueError(
                "validation_fraction must be a float in (0, 1), got "
                f"{self.validation_fraction!r}"
            )
        check_checkpoint_params(self.checkpoint, self.checkpoint_every)
        if self.callback is not None and not callable(self.callback):
            raise ValueError(
                f"callback must be None or a callable, got {self.callback!r}"
            )
        return compressor, get_aggregator(self.aggregation)

    def _validate_input(self, X, y, sample_weight, reset):
        # C order: the gradient reads sampled rows in place, and one layout means
        # one code path, so every backend gives the same bits (a Fortran-ordered
        # X, as pandas often gives, is copied once here).
        X, y = validate_data(
            self, X, y, reset=reset, dtype=[np.float64, np.float32], y_numeric=True,
            order="C",
        )
        y = y.astype(X.dtype, copy=False)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=X.dtype, ensure_non_negative=True
            )
            if not sample_weight.max() > 0:
                raise ValueError("sample_weight must not be all zeros")
            # Workers sum s_i * gradient_i over uniformly drawn rows, so the step
            # scales with the mean weight; rescale it to 1 so that a learning
            # rate ("auto" included) means the same for any scale of the weights.
            # The total the weights were scaled by is returned too, so that
            # processes holding parts of the data can rescale to the mean over
            # all of them.
            with np.errstate(over="ignore"):
                weight_sum = float(sample_weight.sum())
            # Divided by the largest first: the sum of weights near 1e306
            # overflows, and n over the sum of subnormal ones does.
            sample_weight = sample_weight / sample_weight.max()
            sample_weight = sample_weight * (
                sample_weight.shape[0] / sample_weight.sum()
            )
        else:
            weight_sum = float(X.shape[0])
        return X, y, sample_weight, weight_sum


    # -- fitting ------------------------------------------------------------------
    def _fit(self, X, y, sample_weight, partial):
        # A fit that raises (bad data, a diverging step) leaves the estimator as
        # it was: validation may already have replaced n_features_in_, which
        # would no longer match a previous fit's coef_.
        state = dict(self.__dict__)
        try:
            backend = get_backend(self.backend)
            # From the first pass over X on (even y @ y is threaded): BLAS's
            # spinning workers would slow the steps (see blas_beside_steps).
            with blas_beside_steps(backend.process_cores(), *self._batch_shape(X)):
                return self._fit_unguarded(X, y, sample_weight, partial, backend)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(state)
            raise

    def _batch_shape(self, X):
        """``(rows, features, bytes an item)`` of a worker's batch, as far as
        ``X`` tells before it is validated (a batch of one worker: the largest);
        where it does not (no 2-d shape: a list, or rows held by another MPI
        rank), a batch taken to be large."""
        shape = getattr(X, "shape", None)
        if shape is None or len(shape) != 2:
            return math.inf, 1, 8
        rows = (
            min(_AUTO_BATCH_SIZE, shape[0]) if self.batch_size == "auto"
            else self.batch_size
        )
        if not isinstance(rows, numbers.Integral):  # validated later, not here
            rows = math.inf
        itemsize = 4 if getattr(X, "dtype", None) == np.float32 else 8
        return rows, shape[1], itemsize

    def _fit_unguarded(self, X, y, sample_weight, partial, backend):
        compressor, aggregator = self._validate_params()
        continuing = (partial or self.warm_start) and hasattr(self, "coef_")
        shared = _shared_parameters(self, partial)
        backend.agree("estimator parameters", shared)
        # Processes sharing a fit (MPI ranks) must draw the same numbers.
        rng = backend.common(check_random_state(self.random_state))
        # Private until the fit succeeds: a public ``n_workers_`` would make a
        # failed first fit look fitted to check_is_fitted.
        self._n_workers = backend.resolve_n_workers(self.n_workers)
        aggregator.check_byzantine(self.n_byzantine, self._n_workers)
        # Before rng is first used: resuming sets it back to where it started.
        checkpoint = open_checkpoint(self, backend, rng, shared, partial, continuing)
        validating = self.early_stopping and not partial
        split_seed = rng.randint(np.iinfo(np.int32).max) if validating else None
        data = backend.prepare_data(
            functools.partial(
                self._training_set, reset=not continuing, split_seed=split_seed
            ),
            X, y, sample_weight,
        )
        if not continuing:
            # Where the rows came from another process, X was not seen here.
            self._set_input_features(data)
        n_samples = data.n_samples
        if self._n_workers > n_samples:
            raise ValueError(
                f"n_workers={self._n_workers} is larger than the number of training "
                f"samples ({n_samples}); every worker needs at least one sample"
            )
        batch_size = self._effective_batch_size(n_samples)

        backend.start(
            data.X, data.y, data.sample_weight, n_workers=self._n_workers,
            batch_size=batch_size, compressor=compressor, aggregator=aggregator,
            n_byzantine=self.n_byzantine, attack=get_attack(self.attack),
            shards=self.shards,
        )
        try:
            if checkpoint is not None:
                checkpoint.check_data()
            result = self._fit_runs(
                backend, data.X.shape[1], data.X.dtype, batch_size, compressor, rng,
                continuing, partial, validating, data.validation, n_samples,
                data, checkpoint,
            )
        except FloatingPointError as error:
            if not hasattr(error, "reason"):
                raise
            attacked = self._undefended_attack()
            if attacked:
                raise FloatingPointError(
                    f"SGD diverged: {error.reason}: {attacked}."
                ) from None
            if self.learning_rate != "auto":
                raise
            raise divergence_error(error.reason, auto=True) from None
        finally:
            backend.stop()
        self._store(result, backend.record, data.X.shape[1], continuing)
        if checkpoint is not None:
            checkpoint.remove()
        return self

    def _training_set(self, X, y, sample_weight, *, reset, split_seed):
        """Validate the data and split off the validation set (``split_seed``
        not None); run by the backend where the data is."""
        X, y, sample_weight, weight_sum = self._validate_input(
            X, y, sample_weight, reset=reset
        )
        weight_count = X.shape[0]
        validation = None
        if split_seed is not None:
            X, X_val, y, y_val, sample_weight, sw_val = self._split_validation(
                X, y, sample_weight, split_seed
            )
            validation = (X_val, y_val, sw_val)
        return TrainingSet(
            X, y, sample_weight, n_samples=X.shape[0],
            zero_loss=_zero_model_loss(y, sample_weight),
            mean_loss=_zero_model_loss(y - np.average(y, weights=sample_weight),
                                       sample_weight),
            any_positive_target=bool(np.any(y > 0)),
            weight_sum=weight_sum, weight_count=weight_count,
            feature_names=getattr(self, "feature_names_in_", None),
            validation=validation,
        )

    def _set_input_features(self, data):
        self.n_features_in_ = data.X.shape[1]
        if data.feature_names is not None:
            self.feature_names_in_ = data.feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    def _split_validation(self, X, y, sample_weight, seed):
        arrays = [X, y] + ([] if sample_weight is None else [sample_weight])
        split = train_test_split(
            *arrays, test_size=self.validation_fraction, random_state=seed
        )
        if split[2].shape[0] < 1 or split[1].shape[0] < 1:
            raise ValueError(
                "too few samples for early_stopping with validation_fraction="
                f"{self.validation_fraction}"
            )
        X, X_val, y, y_val = split[:4]
        sw, sw_val = (split[4], split[5]) if sample_weight is not None else (None, None)
        for part, weights in (("training", sw), ("validation", sw_val)):
            # Sparse weights can leave one side of the split with none: its
            # loss or its R^2 would divide by zero.
            if weights is not None and not weights.sum() > 0:
                raise ValueError(
                    f"early_stopping's split (validation_fraction="
                    f"{self.validation_fraction}) left the {part} rows with a total "
                    "sample_weight of 0: give more rows a positive weight, or change "
                    "validation_fraction or random_state"
                )
        return X, X_val, y, y_val, sw, sw_val

    def _effective_batch_size(self, n_samples):
        if self.batch_size == "auto":
            batch_size = min(_AUTO_BATCH_SIZE, n_samples)
        else:
            batch_size = self.batch_size
            if batch_size > n_samples:
                warnings.warn(
                    f"batch_size={batch_size} is larger than the {n_samples} "
                    f"training samples; using batch_size={n_samples}",
                    UserWarning,
                )
                batch_size = n_samples
        if batch_size < self._n_workers:
            raise ValueError(
                f"batch_size={batch_size} is smaller than n_workers={self._n_workers};"
                " each worker needs at least one point per step"
            )
        return batch_size

    def _start_point(self, backend, n_features, batch_size, compressor, rng, continuing):
        """Initial parameters, step size and the training loss at the initial
        parameters (None where it takes a pass of its own), or the current
        parameters when continuing."""
        if continuing:
            params = np.append(self.coef_, self.intercept_)[
                : n_features + int(self.fit_intercept)
            ].astype(np.float64)
            curvature = getattr(self, "_curvature", None)
            start_loss = None
        else:
            init = check_init(self.init, n_features)
            params, start_loss = initial_params(
                init, backend.reduce, n_features, self.fit_intercept, rng
            )
            curvature = None
        sign_units = get_aggregator(self.aggregation).sign_units(compressor)
        if sign_units:
            # A sign step shrinks with the steps taken, warm starts included.
            first = self.t_ if continuing else 0
            if self.learning_rate != "auto":
                return params, HalvingStep(self.learning_rate, first=first), start_loss
        # A number given since the last fit takes effect, as in scikit-learn's SGD.
        elif self.learning_rate != "auto":
            return params, ConstantStep(self.learning_rate), start_loss
        # "auto" keeps the curvature measured when the model was initialized, but
        # recomputes the step from it: the batch size, solver, bits or workers of
        # this call (a small partial_fit chunk, a warm start at 2 bits) may need
        # a smaller one.
        if curvature is None:
            curvature = measure_curvature(
                backend.reduce, params, rng,
                summed=_sums_statistics(get_aggregator(self.aggregation)),
            )
        self._curvature = curvature
        if sign_units:
            # Measured once, at the initial point, as the curvature is: the
            # schedule, not the gradient's size, shrinks a continuing fit's step.
            sign_step = getattr(self, "_sign_step", None) if continuing else None
            if sign_step is None:
                sign_step = initial_sign_step(
                    auto_learning_rate(curvature, batch_size),
                    np.linalg.norm(backend.reduce(ShardWorker.gradient, params)),
                    params.shape[0],
                )
            self._sign_step = sign_step
            return params, HalvingStep(sign_step, first=first), start_loss
        delta = compressor.variance_factor(params.shape[0], self._n_workers)
        # A rule with memory (BGMD) delays part of the aggregated step, not of
        # one worker's: its factor is not averaged over the workers.
        memory = get_aggregator(self.aggregation).variance_factor(params.shape[0])
        return params, ConstantStep(auto_learning_rate(
            curvature, batch_size, variance_factor=delta, n_workers=self._n_workers
        ) / (1 + memory)), start_loss

    def _fit_runs(
        self, backend, n_features, dtype, batch_size, compressor, rng,
        continuing, partial, validating, validation, n_samples, data, checkpoint,
    ):
        zero_loss = data.zero_loss
        params0, learning_rate, start_loss = self._start_point(
            backend, n_features, batch_size, compressor, rng, continuing
        )
        steps_per_epoch = math.ceil(n_samples / batch_size)
        if start_loss is None:
            start_loss = _full_loss(backend, params0)
        if not math.isfinite(start_loss):
            raise ValueError(
                f"the training loss at the initial point is {start_loss}: the "
                "initial coefficients (init) or the data are too large in "
                "magnitude for float arithmetic; rescale them"
            )
        # A stable step never takes the loss far above both the start and the
        # zero model; a diverging one does, before or instead of overflowing
        # (the ReLU may die first and leave huge but finite coefficients).
        ceiling = _DIVERGENCE_FACTOR * max(start_loss, zero_loss)
        # Below this the residuals are rounding noise of the dtype: a noiseless
        # problem is solved, and more epochs only shuffle the last bits.
        # In Python floats: a float32 eps would keep the product in float32,
        # which overflows to inf for targets beyond ~1e19 and stops every fit.
        floor = (_PRECISION_FACTOR * float(np.finfo(dtype).eps)) ** 2 * zero_loss
        n_runs = 1 if (partial or continuing) else self.n_ensemble
        # Where a continuing fit's counts start: what the callback is told.
        counted = (self.t_, self.n_iter_) if continuing else (0, 0)
        runs = []
        for run in range(n_runs):
            backend.reseed(rng.randint(np.iinfo(np.int32).max))
            if continuing:
                self._restore_compressor_states(backend, compressor)
            finished = checkpoint and checkpoint.finished_run(run)
            if finished:  # by the fit this one resumes
                runs.append(dict(finished, compressor_states=(
                    compressor, self._n_workers, finished["compressor_states"]
                )))
                continue
            runs.append(
                self._run_sgd(
                    backend, params0.astype(dtype), learning_rate, steps_per_epoch,
                    1 if partial else self.max_iter, validating, validation, run,
                    (floor, ceiling, start_loss), checkpoint, counted,
                )
            )
            runs[-1]["compressor_states"] = (
                compressor, self._n_workers, backend.compressor_states()
            )
            if runs[-1]["stopped_by_callback"]:
                break  # the fit ends at the step the callback chose
            if checkpoint is not None:
                checkpoint.run_finished(run, runs[-1], n_runs)
        # (A run finished by the fit a checkpoint resumes was not stopped.)
        stopped = runs[-1].get("stopped_by_callback", False)
        chosen = (
            len(runs) - 1 if stopped
            else select_consistent_run([r["params"] for r in runs])
        )
        result = runs[chosen]
        if stopped:  # the caller chose this model; the advice below is not for it
            result["learning_rate"] = learning_rate
            result["ensemble"] = np.array([r["params"][:n_features] for r in runs])
            return result
        final_loss = _full_loss(backend, result["params"].astype(np.float64))
        # SGD noise may end a little above a start that was already near the
        # optimum; a rise by more than a tenth (beyond rounding, for a start
        # that was already exact) means the step is the problem.
        attacked = self._undefended_attack()
        if not continuing and final_loss > 1.1 * start_loss + floor:
            warnings.warn(
                f"The training loss rose from {start_loss:.6g} at the initial point "
                f"to {final_loss:.6g}: "
                + (
                    attacked + "."
                    if attacked
                    else f"learning_rate={learning_rate:.3g} is probably too large. "
                    + (
                        "Give a smaller learning_rate."
                        if self.learning_rate == "auto"
                        else "Use learning_rate='auto' or a smaller learning_rate."
                    )
                ),
                ConvergenceWarning,
            )
        if not partial and final_loss > data.mean_loss + floor:
            _warn_worse_than_mean(
                final_loss, data, self.learning_rate, learning_rate, start_loss,
                None if result["converged"] else result["n_iter"], attacked,
                standardized=lambda: _standardized(backend.reduce(_column_moments)),
            )
        elif (
            not partial and not attacked and not isinstance(learning_rate, HalvingStep)
            and final_loss > _EXACT_LOSS * data.mean_loss
        ):
            # Below that loss a noiseless fit is at its minimum: slopes are
            # rounding. A sign method's step is a distance, the same for every
            # parameter: no parameter stalls for its scale.
            sums = backend.reduce(ShardWorker.progress, result["params"].astype(np.float64))
            _warn_stalled(
                sums, learning_rate, result["t"], n_features,
                getattr(data, "feature_names", None),
            )
        result["learning_rate"] = learning_rate
        result["ensemble"] = np.array([r["params"][:n_features] for r in runs])
        return result

    def _undefended_attack(self):
        """Why a fit went wrong when Byzantine workers attack an aggregation
        without defence (the mean), else None."""
        aggregator = get_aggregator(self.aggregation)
        if self.n_byzantine > 0 and _sums_statistics(aggregator):
            return (
                f"n_byzantine={self.n_byzantine} Byzantine worker(s) attack "
                f"aggregation={aggregator!r}, which has breakdown point 0; use a "
                "robust aggregation such as 'geometric_median'"
            )
        return None

    def _restore_compressor_states(self, backend, compressor):
        """Hand the workers the compressor states the last fit ended with, when
        they are states of the same compressor on as many workers."""
        saved, n_workers, states = getattr(
            self, "_compressor_states", (None, None, None)
        )
        if states is not None and saved == compressor and n_workers == self._n_workers:
            backend.restore_compressor_states(states)

    def _run_sgd(
        self, backend, params, learning_rate, steps_per_epoch, max_epochs,
        validating, validation, run, loss_bounds, checkpoint=None, counted=(0, 0),
    ):
        """One SGD run; returns its final (or best validated) parameters and curves.

        ``counted``: the steps and epochs taken before this call (a continuing
        fit's ``t_`` and ``n_iter_``), from which the callback's counts go on.
        """
        floor, ceiling, start_loss = loss_bounds
        check_loss = self.tol is not None and max_epochs > 1
        tol = self.tol or 0.0
        if validating:
            rule = ValidationPlateau(tol, self.n_iter_no_change)
        else:
            rule = LossPlateau(
                tol, self.n_iter_no_change, floor,
                functools.partial(_full_loss, backend), start_loss,
            )
        losses, scores = [], []
        first_epoch = 0
        resumed = checkpoint and checkpoint.resume(run, rule)
        # Steps, bytes sent and seconds at the end of each epoch, from the
        # run's start (read after resume, which may restore the record).
        steps, sent, seconds = [], [], []
        sent_before = backend.record.bytes_sent
        if resumed:
            params, first_epoch, losses, saved_scores = resumed
            steps = [(e + 1) * steps_per_epoch for e in range(first_epoch)]
            # A checkpoint keeps the losses, not when or after how many bytes
            # the killed fit reached them: NaN, for every epoch of this run.
            sent, seconds = [math.nan] * first_epoch, [math.nan] * first_epoch
            sent_before = math.nan
            scores = saved_scores if validating else scores
            if self.verbose:
                _log(f"run {run}: resumed from checkpoint {checkpoint.path} after "
                     f"epoch {first_epoch} ({first_epoch * steps_per_epoch} steps)")
        update = _sgd_update(learning_rate, first=first_epoch * steps_per_epoch)
        converged = False
        notifier = after_step = None
        if self.callback is not None:
            notifier = _StepNotifier(
                self.callback, backend, run,
                step=counted[0] + first_epoch * steps_per_epoch,
                epoch=counted[1] + first_epoch,
            )
            after_step = notifier.after_step
            # At the start of a run (an uninterrupted fit made this call
            # before the steps a resumed one continues from).
            if not resumed and notifier.notify(params):
                return self._run_result(
                    params, 0, 0, losses, scores if validating else None, None,
                    converged, stopped_by_callback=True,
                )
        started = time.perf_counter()
        seconds_before = math.nan if resumed else started
        for epoch in range(first_epoch, max_epochs):
            if notifier is not None:
                notifier.epoch = counted[1] + epoch + 1
            params = backend.run_steps(params, update, steps_per_epoch, after_step)
            loss_sum, draws = backend.reduce(ShardWorker.batch_loss)
            loss = loss_sum / draws
            if not loss <= ceiling:
                raise divergence_error(
                    f"the mean batch loss reached {loss:.3g} in epoch {epoch + 1} "
                    f"with learning_rate={learning_rate:.3g}"
                )
            losses.append(float(loss))  # plain floats, as in scikit-learn
            steps.append((epoch + 1) * steps_per_epoch)
            sent.append(backend.record.bytes_sent - sent_before)
            seconds.append(time.perf_counter() - seconds_before)
            if validating:
                # Scored where the validation set is (it may be on one process
                # only) and shared, so every process keeps the same epoch.
                here = (
                    None if validation is None
                    else _validation_statistics(validation, params)
                )
                score = _r2_from_statistics(backend.gather_validation(here))
                scores.append(score)
                if notifier is not None and notifier.stopped:
                    break
                stop = rule.should_stop(score, params) or loss <= floor
            elif notifier is not None and notifier.stopped:
                break
            elif check_loss:
                # Every process sees the same losses, so all of them take the
                # same branch into the collective exact loss.
                stop = rule.should_stop(loss, params)
            else:
                stop = False
            if self.verbose:
                _log_epoch(
                    run, epoch, (epoch + 1) * steps_per_epoch, loss, scores,
                    time.perf_counter() - started,
                )
            if check_loss and stop:
                converged = True
                break
            # Not after the last epoch: a checkpoint must leave work to resume.
            if checkpoint and epoch + 1 < max_epochs and checkpoint.due(epoch + 1):
                checkpoint.save(run, epoch + 1, steps_per_epoch, params, rule,
                                losses, scores if validating else None)
        if notifier is not None and notifier.stopped:
            if self.verbose:
                _log(f"run {run}: stopped by the callback at step {notifier.step}")
            steps[-1] = notifier.step - counted[0]
            return self._run_result(
                params, epoch + 1, notifier.step - counted[0], losses,
                scores if validating else None, rule.best_score if validating else None,
                converged, stopped_by_callback=True, curves=(steps, sent, seconds),
            )
        if check_loss and not converged:
            warnings.warn(
                f"ReLURegressor stopped after max_iter={max_epochs} epochs without "
                "converging; increase max_iter or tol.",
                ConvergenceWarning,
            )
        final = params if rule.best_params is None else rule.best_params
        best_score = rule.best_score if validating else None
        return self._run_result(
            final, epoch + 1, (epoch + 1) * steps_per_epoch, losses,
            scores if validating else None, best_score, converged,
            curves=(steps, sent, seconds),
        )

    @staticmethod
    def _run_result(
        params, n_iter, t, losses, scores, best_score, converged,
        stopped_by_callback=False, curves=([], [], []),
    ):
        return {
            "params": params,
            "n_iter": n_iter,
            "t": t,
            "loss_curve": losses,
            "steps_curve": list(curves[0]),
            "bytes_sent_curve": list(curves[1]),
            "seconds_curve": list(curves[2]),
            "validation_scores": scores,
            "best_validation_score": best_score,
            "converged": converged,
            "stopped_by_callback": stopped_by_callback,
        }

    def _store(self, result, record, n_features, continuing):
        coef, intercept = split_params(result["params"], n_features)
        self.coef_ = np.array(coef)
        self.intercept_ = float(intercept)
        self.learning_rate_ = float(result["learning_rate"])
        self.ensemble_coef_ = result["ensemble"]
        self.comm_record_ = record
        self.stopped_by_callback_ = bool(result.get("stopped_by_callback", False))
        # Error-feedback memory and momentum: what warm_start continues from.
        self._compressor_states = result["compressor_states"]
        self.n_workers_ = self._n_workers
        if continuing:
            self.n_iter_ += result["n_iter"]
            self.t_ += result["t"]
            self.loss_curve_ = self.loss_curve_ + result["loss_curve"]
        else:
            self.n_iter_ = result["n_iter"]
            self.t_ = result["t"]
            self.loss_curve_ = result["loss_curve"]
        for name in ("steps_curve", "bytes_sent_curve", "seconds_curve"):
            earlier = getattr(self, name + "_", None) if continuing else []
            if earlier is None:  # a model fitted before these were recorded
                earlier = [math.nan] * (len(self.loss_curve_) - len(result["loss_curve"]))
            # NaN for a run that a checkpoint of an older version finished.
            new = result.get(name, [math.nan] * len(result["loss_curve"]))
            setattr(self, name + "_", _continued_curve(earlier, new))
        self.validation_scores_ = result["validation_scores"]
        self.best_validation_score_ = result["best_validation_score"]


def _continued_curve(earlier, new):
    """A cumulative per-epoch curve (steps, bytes, seconds): ``earlier``'s epochs, then
    ``new``'s, which count from their own start, added to ``earlier``'s last."""
    offset = earlier[-1] if earlier else 0
    return list(earlier) + [offset + value for value in new]


_DIVERGENCE_FACTOR = 10.0
_PRECISION_FACTOR = 100.0
#: ``batch_size="auto"``: this many points a step, or every sample if fewer.
_AUTO_BATCH_SIZE = 200


def _zero_model_loss(y, sample_weight):
    """The training loss of ``w = 0, b = 0`` (it predicts 0), from ``y`` alone:
    no pass over ``X``."""
    y = y.astype(np.float64)
    with np.errstate(over="ignore"):
        if sample_weight is None:
            loss = 0.5 * float(y @ y) / y.shape[0]
        else:
            loss = 0.5 * float(sample_weight @ (y * y)) / float(sample_weight.sum())
    if not np.isfinite(loss):
        raise ValueError(
            "y is too large in magnitude for float arithmetic (its squares "
            "overflow); rescale it before fitting"
        )
    return loss


def _sums_statistics(aggregator):
    """Whether ``aggregator`` is the rule without defence (breakdown point 0,
    the mean): it sums the workers' statistics, so a Byzantine worker moves
    them at will, and honest sums keep their signs (a positive semi-definite
    curvature, a positive total weight)."""
    return aggregator.breakdown_point == "0"


#: A training loss below this share of the mean-predicting model's is exact.
_EXACT_LOSS = 1e-12
#: The share of the loss that one stalled parameter must leave for a warning.
_STALLED_SHARE = 0.1


def _warn_stalled(sums, step, steps, n_features, feature_names):
    """Warn where a parameter the step could barely move would, moved alone,
    still lower the training loss by :data:`_STALLED_SHARE` or more (see
    :mod:`._stall`)."""
    shares, fastest = stalled_parameters(sums, step, steps)
    worst = int(np.argmax(shares))
    if shares[worst] < _STALLED_SHARE:
        return

    def name(j):
        if j == n_features:
            return "the intercept"
        return repr(str(feature_names[j])) if feature_names is not None else f"x{j}"

    # The others that would lower the loss by 1% or more each.
    others = [j for j in np.argsort(-shares) if j != worst and shares[j] >= 0.01]
    also = ""
    if others:
        listed = ", ".join(name(j) for j in others[:5])
        if len(others) > 5:
            listed += f" and {len(others) - 5} more"
        also = f" Others stalled too: {listed}."
    warnings.warn(
        f"The fit stopped far from a minimum of the training loss: moving "
        f"{name(worst)} alone would lower it by about {shares[worst]:.0%}, but the "
        f"step ({step:.3g}) could barely change it in this fit's {steps} steps.{also} "
        f"The step is set by the parameter of largest curvature ({name(fastest)}), "
        "and these features' scales are probably much smaller: standardize the "
        "features (sklearn.preprocessing.StandardScaler, in a Pipeline).",
        ConvergenceWarning,
    )


def _warn_worse_than_mean(final_loss, data, learning_rate, step, start_loss, budget,
                          attacked=None, standardized=lambda: False):
    """Warn that the fit predicts worse than the mean of ``y``, and say why;
    ``budget`` is the epochs run when the fit did not converge, else None;
    ``attacked`` names Byzantine workers the aggregation does not withstand;
    ``standardized()`` tells whether the columns are already standardized
    (a pass over the data, taken only when the scale is the suspect)."""
    r2 = 1 - final_loss / data.mean_loss if data.mean_loss > 0 else -np.inf
    if attacked:
        cause = attacked
    elif not data.any_positive_target:
        cause = (
            "all targets are <= 0, where a ReLU can only predict 0 or more: its "
            "best fit is w = 0, b <= 0. Fit -y, or a model that can go negative"
        )
    elif learning_rate != "auto" and final_loss > start_loss:
        cause = (
            f"learning_rate={step:.3g} is probably too large: the loss rose from "
            "the initial point. Use learning_rate='auto' or a smaller step"
        )
    elif budget is not None and learning_rate != "auto":
        cause = (
            f"it ran only {budget} epoch(s) and had not converged, at "
            f"learning_rate={step:.3g}, which may be too small for this data: use "
            "learning_rate='auto' or a larger step, or raise max_iter"
        )
    elif budget is not None:
        cause = (
            f"it ran only {budget} epoch(s) and had not converged: raise max_iter. "
            "If it stays poor, standardize the features: "
            "make_pipeline(StandardScaler(), ReLURegressor())"
        )
    elif standardized():
        # StandardScaler would leave the columns as they are: the step it is.
        cause = (
            f"the features are standardized, and at learning_rate={step:.3g} "
            "SGD's noise probably kept it far from the minimum: "
            + (
                "give a smaller learning_rate, or raise n_iter_no_change"
                if learning_rate == "auto"
                else "use learning_rate='auto' or a smaller step"
            )
        )
    else:
        cause = (
            "the features are probably not standardized: on columns of very "
            "different scales (or far from 0) SGD progresses slowly and "
            "noisily. Fit make_pipeline(StandardScaler(), ReLURegressor()), or "
            "raise max_iter"
        )
    warnings.warn(
        f"The fit predicts the training data worse than their mean does "
        f"(training R^2 {r2:.3g}): {cause}.",
        ConvergenceWarning,
    )


@shard_statistic
def _column_moments(worker):
    """``[rows, column sums, column sums of squares]`` of a worker's shard."""
    X = worker.X
    return np.concatenate([
        [X.shape[0]],
        X.sum(axis=0, dtype=np.float64),
        np.einsum("ij,ij->j", X, X, dtype=np.float64),
    ])


def _standardized(moments):
    """Whether the columns whose :func:`_column_moments` are ``moments`` are
    already about what StandardScaler makes of them: each has mean within 0.1
    of 0 and standard deviation within a factor 2 of 1, or is all zeros (a
    constant column, scaled)."""
    n, sums, squares = moments[0], *np.split(moments[1:], 2)
    mean = sums / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0))
    zero = (std == 0) & (mean == 0)
    return bool(np.all((np.abs(mean) <= 0.1) & (((std >= 0.5) & (std <= 2)) | zero)))


def _shared_parameters(estimator, partial):
    """What every process of a fit must agree on, comparable across processes:
    the method and the parameters (``verbose`` and ``random_state`` may differ:
    the first process's random stream is used everywhere; each process calls
    its own ``callback``, a function that cannot be compared across them)."""

    def comparable(value):
        if value is None or isinstance(value, (str, numbers.Number)):
            return value
        if isinstance(value, (np.ndarray, list, tuple)):
            array = np.ascontiguousarray(value)
            digest = hashlib.sha256(array.tobytes()).hexdigest()[:16]
            return f"array{array.shape} {array.dtype} sha256:{digest}"
        return type(value).__qualname__

    params = estimator.get_params(deep=False)
    shared = {
        name: comparable(value)
        for name, value in params.items()
        if name not in ("verbose", "random_state", "callback")
    }
    return {"method": "partial_fit" if partial else "fit", **shared}


def _validation_statistics(validation, params):
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


def _r2_from_statistics(parts):
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


def _full_loss(backend, params):
    """The exact weighted training loss at ``params``, summed over the workers."""
    loss_sum, weight_sum = backend.reduce(ShardWorker.loss, params)
    return loss_sum / weight_sum


def _log(message):
    if not logger.handlers and not logging.getLogger().handlers:
        # verbose=1 must print something even where logging was never set up.
        logger.addHandler(logging.StreamHandler())
        logger.setLevel(logging.INFO)
    logger.info(message)


def _log_epoch(run, epoch, steps, loss, scores, elapsed):
    message = (
        f"run {run}, epoch {epoch + 1} ({steps} steps, {elapsed:.1f} s): "
        f"loss {loss:.6g}"
    )
    if scores:
        message += f", validation R^2 {scores[-1]:.6g}"
    _log(message)
