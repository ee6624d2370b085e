"""ReLURegressor: fit ``max(0, <w, x> + b)`` by SGD or quantized SGD."""

import functools
import math
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ._checkpoint import open_checkpoint
from ._fit import Continuation, Fit
from ._gradient import split_params
from ._parallel import blas_beside_steps
from ._params import validated
from ._registry import describe
from ._run import StepInfo
from ._sparse import as_csr, issparse
from ._training_data import split_validation, zero_model_loss
from ._worker import TrainingSet
from .aggregation import get_aggregator
from .attacks import get_attack
from .backends import get_backend
from .compression import check_quantizer_params, get_compressor

__all__ = ["ReLURegressor", "StepInfo"]

#: ``batch_size="auto"``: this many points a step, or every sample if fewer.
AUTO_BATCH_SIZE = 200


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
    worker_momentum : float, default=0.0
        Each worker sends the momentum of its vectors, ``m = beta m + (1 -
        beta) g`` with ``beta = worker_momentum`` in ``[0, 1)`` (from ``m = g``
        at its first step), instead of ``g`` itself: a defence against attacks
        hidden in the sampling noise ("Learning from History", Karimireddy et
        al., 2021), since the momentum averages the honest workers' noise
        away. A Byzantine worker's attack acts on its momentum. ``0`` sends
        the vectors as they are. See :ref:`robust-worker-momentum`.
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
    local_steps : int, default=1
        Steps each worker takes on its own shard between exchanges (Local
        SGD): from the last agreed model, every worker takes ``local_steps``
        SGD steps on its own share of the batch, then sends its model change
        (in gradient units, compressed by ``solver``) and the aggregation of
        the changes moves the agreed model, to the workers' average with
        ``aggregation="mean"``. One round of communication carries
        ``local_steps`` steps: ``t_`` counts the local steps,
        ``comm_record_.n_rounds`` the rounds. ``learning_rate="auto"`` then
        plans for one worker's share of the batch. Not with sign directions
        (``"signsgd"`` without error feedback, ``"signum"``, or
        ``aggregation="majority"``). See :ref:`local-steps`.
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
    average : bool or int, default=False
        Keep the average of the iterates and make it the model, as
        ``SGDRegressor(average=...)``: ``True`` averages every step's
        parameters, an integer ``N >= 1`` those after ``N`` samples
        (``batch_size`` a step; with ``local_steps``, the agreed model after
        every round); ``False`` or ``0`` keeps the last iterate.
        With a constant step on noisy data the average has far less of the
        step's noise than the last iterate. ``coef_`` and ``intercept_`` are
        then the averaged ones; ``warm_start`` and ``partial_fit`` continue
        the average and step on from the last iterate. The steps are then
        taken one at a time (the in-process backend's compiled loop does not
        run). See :ref:`averaged-iterates`.
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
        Show the fit's progress when positive. Each epoch is one ``INFO`` line
        of the ``"sklearn_relu"`` logger, which goes to the application's
        logging handlers where it configured any; where it did not, the
        progress is drawn on stderr: one line kept up to date on a terminal (a
        bar, the epoch, the loss, the bytes sent, the time left), else a line
        every few epochs (about 50 a run at most; every epoch with
        ``verbose >= 2``). Under MPI only the first rank draws it.
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
        SGD steps taken by the selected run (with ``local_steps``, each
        worker's local steps).
    loss_curve_ : list of float
        Mean batch loss of each epoch of the selected run (with
        ``local_steps``, of the batches of the local steps, at the workers'
        local models).
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
        worker_momentum=0.0,
        shards=None,
        batch_size="auto",
        local_steps=1,
        learning_rate="auto",
        average=False,
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
        self.worker_momentum = worker_momentum
        self.shards = shards
        self.local_steps = local_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.average = average
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
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
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
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(
            self, X, reset=False, dtype=[np.float64, np.float32],
            accept_sparse=["csr", "csc"],
        )
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
        tags.input_tags.sparse = True
        return tags

    # -- validation ---------------------------------------------------------------
    def _validate_params(self):
        """Every parameter checked and normalized, whatever the solver (see
        :mod:`._params`), and the compressor and aggregator they name."""
        params = validated(self.get_params(deep=False))
        compressor = get_compressor(
            params.solver, bits=params.bits, bucket_size=params.bucket_size,
            encoding=params.encoding, momentum=params.momentum, k=params.k,
            error_feedback=params.error_feedback,
        )
        # bits is checked against QSGD's range where the solver does not read
        # it, so that a bad value is reported before it is used. A compressor
        # that reads it (QSGD: 2..16, IntSGD: 8, 16 or 32) checked it.
        inner = getattr(compressor, "compressor", compressor)  # error feedback's
        if getattr(inner, "bits", None) is None:
            check_quantizer_params(
                bits=params.bits, bucket_size=params.bucket_size, encoding=params.encoding
            )
        return params, compressor, get_aggregator(params.aggregation)

    def _validate_input(self, X, y, sample_weight, reset):
        # C order: the gradient reads sampled rows in place, and one layout means
        # one code path, so every backend gives the same bits (a Fortran-ordered
        # X, as pandas often gives, is copied once here; a sparse X becomes
        # CSR, its rows' entries read in place: docs/user_guide.rst, "Sparse
        # data").
        X, y = validate_data(
            self, X, y, reset=reset, dtype=[np.float64, np.float32], y_numeric=True,
            order="C", accept_sparse=True,
        )
        if issparse(X):
            X = as_csr(X)
        y = y.astype(X.dtype, copy=False)
        if sample_weight is None:
            return X, y, None, float(X.shape[0])
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
        sample_weight = sample_weight * (sample_weight.shape[0] / sample_weight.sum())
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
        rank), a batch taken to be large. A sparse ``X``'s steps run on one
        thread: no features count."""
        shape = getattr(X, "shape", None)
        if shape is None or len(shape) != 2:
            return math.inf, 1, 8
        if issparse(X):
            shape = (shape[0], 0)
        rows = (
            min(AUTO_BATCH_SIZE, shape[0]) if self.batch_size == "auto"
            else self.batch_size
        )
        if not isinstance(rows, numbers.Integral):  # validated later, not here
            rows = math.inf
        itemsize = 4 if getattr(X, "dtype", None) == np.float32 else 8
        return rows, shape[1], itemsize

    def _fit_unguarded(self, X, y, sample_weight, partial, backend):
        params, compressor, aggregator = self._validate_params()
        continuing = (partial or params.warm_start) and hasattr(self, "coef_")
        shared = _shared_parameters(self, partial)
        backend.agree("estimator parameters", shared)
        # Processes sharing a fit (MPI ranks) must draw the same numbers.
        rng = backend.common(check_random_state(params.random_state))
        # Private until the fit succeeds: a public ``n_workers_`` would make a
        # failed first fit look fitted to check_is_fitted.
        self._n_workers = backend.resolve_n_workers(params.n_workers)
        aggregator.check_byzantine(params.n_byzantine, self._n_workers)
        # Before rng is first used: resuming sets it back to where it started.
        checkpoint = open_checkpoint(
            self, backend, rng, shared, partial, continuing, self._n_workers,
            curvature=getattr(self, "_curvature", None),
        )
        try:
            data = self._prepare_data(backend, params, rng, (X, y, sample_weight),
                                      partial, continuing)
            batch_size = self._effective_batch_size(data.n_samples, params.batch_size)
            backend.start(
                data.X, data.y, data.sample_weight, n_workers=self._n_workers,
                batch_size=batch_size, compressor=compressor, aggregator=aggregator,
                n_byzantine=params.n_byzantine, attack=get_attack(params.attack),
                shards=params.shards,
            )
            try:
                if checkpoint is not None:
                    checkpoint.check_data()
                result = Fit(
                    params, backend, data, compressor=compressor, aggregator=aggregator,
                    rng=rng, batch_size=batch_size, n_workers=self._n_workers,
                    partial=partial, checkpoint=checkpoint,
                    continuation=self._continuation() if continuing else None,
                ).execute()
            finally:
                backend.stop()
            self._store(result, backend.record, continuing)
            if checkpoint is not None:
                checkpoint.remove()
        finally:
            if checkpoint is not None:  # its lock, whether the fit ended or raised
                checkpoint.close()
        return self

    def _prepare_data(self, backend, params, rng, Xy, partial, continuing):
        """Validate the data where they are and split the validation rows; the
        :class:`TrainingSet` the backend found."""
        validating = params.early_stopping and not partial
        split_seed = rng.randint(np.iinfo(np.int32).max) if validating else None
        data = backend.prepare_data(
            functools.partial(
                self._training_set, reset=not continuing, split_seed=split_seed,
                validation_fraction=params.validation_fraction,
            ),
            *Xy,
        )
        if not continuing:
            # Where the rows came from another process, X was not seen here.
            self._set_input_features(data)
        if self._n_workers > data.n_samples:
            raise ValueError(
                f"n_workers={self._n_workers} is larger than the number of training "
                f"samples ({data.n_samples}); every worker needs at least one sample"
            )
        return data

    def _continuation(self):
        """What a warm start or a later ``partial_fit`` continues from."""
        params = np.append(self.coef_, self.intercept_)
        iterate, average_state = getattr(self, "_averaged", (None, (None, 0)))
        if self.average and iterate is not None:
            # Steps go on from the last iterate; the average goes on too.
            params = iterate
        else:
            average_state = (None, 0)
        return Continuation(
            params=params, average_state=average_state,
            momentum_states=getattr(self, "_momentum_states", (None, None, None)),
            t=self.t_, n_iter=self.n_iter_,
            curvature=getattr(self, "_curvature", None),
            sign_step=getattr(self, "_sign_step", None),
            compressor_states=getattr(self, "_compressor_states", (None, None, None)),
        )

    def _training_set(self, X, y, sample_weight, *, reset, split_seed,
                      validation_fraction):
        """Validate the data and split off the validation set (``split_seed``
        not None); run by the backend where the data is."""
        X, y, sample_weight, weight_sum = self._validate_input(
            X, y, sample_weight, reset=reset
        )
        weight_count = X.shape[0]
        validation = None
        if split_seed is not None:
            X, X_val, y, y_val, sample_weight, sw_val = split_validation(
                X, y, sample_weight, split_seed, validation_fraction
            )
            validation = (X_val, y_val, sw_val)
        return TrainingSet(
            X, y, sample_weight, n_samples=X.shape[0],
            zero_loss=zero_model_loss(y, sample_weight),
            mean_loss=zero_model_loss(y - np.average(y, weights=sample_weight),
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

    def _effective_batch_size(self, n_samples, batch_size):
        if batch_size == "auto":
            batch_size = min(AUTO_BATCH_SIZE, n_samples)
        elif batch_size > n_samples:
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

    def _store(self, result, record, continuing):
        run = result.run
        coef, intercept = split_params(run.params, self.n_features_in_)
        self.coef_ = np.array(coef)
        self.intercept_ = float(intercept)
        self.learning_rate_ = float(result.learning_rate)
        self.ensemble_coef_ = result.ensemble
        self.comm_record_ = record
        self.stopped_by_callback_ = bool(run.stopped_by_callback)
        # What a warm start continues from.
        self._compressor_states = result.compressor_states
        self._momentum_states = result.momentum_states
        self._curvature, self._sign_step = result.curvature, result.sign_step
        self.n_workers_ = self._n_workers
        # The last iterate and the average's (mean, count), when the model is
        # an average: what a warm start or partial_fit continues from.
        self._averaged = (
            (run.iterate, (run.params.astype(np.float64), run.average_count))
            if run.iterate is not None and run.average_count else
            (run.iterate, (None, 0))
        )
        if continuing:
            self.n_iter_ += run.n_iter
            self.t_ += run.t
            self.loss_curve_ = self.loss_curve_ + run.loss_curve
        else:
            self.n_iter_ = run.n_iter
            self.t_ = run.t
            self.loss_curve_ = run.loss_curve
        for name in ("steps_curve", "bytes_sent_curve", "seconds_curve"):
            earlier = getattr(self, name + "_", None) if continuing else []
            if earlier is None:  # a model fitted before these were recorded
                earlier = [math.nan] * (len(self.loss_curve_) - len(run.loss_curve))
            setattr(self, name + "_", _continued_curve(earlier, getattr(run, name)))
        self.validation_scores_ = run.validation_scores
        self.best_validation_score_ = run.best_validation_score


def _continued_curve(earlier, new):
    """A cumulative per-epoch curve (steps, bytes, seconds): ``earlier``'s epochs, then
    ``new``'s, which count from their own start, added to ``earlier``'s last."""
    offset = earlier[-1] if earlier else 0
    return list(earlier) + [offset + value for value in new]


def _shared_parameters(estimator, partial):
    """What every process of a fit must agree on, comparable across processes:
    the method and the parameters (``verbose`` and ``random_state`` may differ:
    the first process's random stream is used everywhere; each process calls
    its own ``callback``, a function that cannot be compared across them).

    Numbers and strings are kept as they are; anything else is described by
    :func:`~._registry.describe` (``Scaled(c=4)`` is not ``Scaled(c=1e6)``),
    except the backend, compared by its type: its public attributes include
    the record of what earlier fits sent, which is no parameter.
    """
    shared = {"method": "partial_fit" if partial else "fit"}
    for name, value in estimator.get_params(deep=False).items():
        if name in ("verbose", "random_state", "callback"):
            continue
        if value is None or isinstance(value, (str, numbers.Number)):
            shared[name] = value
        elif name == "backend":
            shared[name] = type(value).__qualname__
        else:
            shared[name] = describe(value)
    return shared
