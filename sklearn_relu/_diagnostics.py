"""What a fit that ended badly says: the warnings that name the likely cause.

After the runs, the estimator checks the model it is about to keep against
the training data: a loss above the start's (the step), above the mean
predictor's (the data's scale, a budget too small, all targets <= 0), or a
parameter the step could barely move (features of very different scales).
Each warning names the cause and the one change that fixes it.
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._sparse import column_moments as sparse_column_moments
from ._sparse import issparse
from ._stall import stalled_parameters
from ._worker import shard_statistic

__all__ = [
    "sums_statistics", "warn_if_rose", "warn_stalled", "warn_worse_than_mean", "undefended_attack"]


def undefended_attack(n_byzantine, aggregator):
    """Why a fit went wrong when Byzantine workers attack an aggregation
    without defence (the mean), else None."""
    if n_byzantine > 0 and sums_statistics(aggregator):
        return (
            f"n_byzantine={n_byzantine} Byzantine worker(s) attack "
            f"aggregation={aggregator!r}, which has breakdown point 0; use a "
            "robust aggregation such as 'geometric_median'"
        )
    return None


def sums_statistics(aggregator):
    """Whether ``aggregator`` is the rule without defence (the mean): it sums
    the workers' statistics, so a Byzantine worker moves them at will, and
    honest sums keep their signs (a positive semi-definite curvature, a
    positive total weight)."""
    return not aggregator.robust


def warn_if_rose(start_loss, final_loss, step, attacked, auto):
    """Warn that the training loss rose from the start by more than a tenth
    (SGD noise may end a little above a start that was already near the
    optimum; more means the step, or an attack, is the problem)."""
    if attacked:
        cause = attacked + "."
    else:
        cause = f"learning_rate={step:.3g} is probably too large. " + (
            "Give a smaller learning_rate." if auto
            else "Use learning_rate='auto' or a smaller learning_rate."
        )
    warnings.warn(
        f"The training loss rose from {start_loss:.6g} at the initial point "
        f"to {final_loss:.6g}: {cause}",
        ConvergenceWarning,
    )


#: The share of the loss that one stalled parameter must leave for a warning.
_STALLED_SHARE = 0.1


def scaler_advice(sparse=False):
    """The pipeline that standardizes the features: for sparse ones a scaler
    that keeps the zeros (centering would fill them in)."""
    if sparse:
        return ("make_pipeline(MaxAbsScaler(), ReLURegressor()) (sparse features: "
                "StandardScaler would center them into dense columns)")
    return "make_pipeline(StandardScaler(), ReLURegressor())"


def warn_stalled(sums, step, steps, n_features, feature_names, sparse=False):
    """Warn where a parameter the step could barely move would, moved alone,
    still lower the training loss by :data:`_STALLED_SHARE` or more (see
    :mod:`._stall`); ``sparse``: the features are a sparse matrix."""
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
        "and these features' scales are probably much smaller: scale the "
        f"features, {scaler_advice(sparse)}.",
        ConvergenceWarning,
    )


def warn_worse_than_mean(final_loss, data, learning_rate, step, start_loss, budget,
                          attacked=None, standardized=lambda: False, sparse=False):
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
            f"If it stays poor, scale the features: {scaler_advice(sparse)}"
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
            f"noisily. Fit {scaler_advice(sparse)}, or raise max_iter"
        )
    warnings.warn(
        f"The fit predicts the training data worse than their mean does "
        f"(training R^2 {r2:.3g}): {cause}.",
        ConvergenceWarning,
    )


@shard_statistic
def column_moments(worker):
    """``[rows, column sums, column sums of squares]`` of a worker's shard."""
    X = worker.X
    if issparse(X):
        return np.concatenate([[X.shape[0]], *sparse_column_moments(X)])
    return np.concatenate([
        [X.shape[0]],
        X.sum(axis=0, dtype=np.float64),
        np.einsum("ij,ij->j", X, X, dtype=np.float64),
    ])


def standardized(moments):
    """Whether the columns whose :func:`column_moments` are ``moments`` are
    already about what StandardScaler makes of them: each has mean within 0.1
    of 0 and standard deviation within a factor 2 of 1, or is all zeros (a
    constant column, scaled)."""
    n, sums, squares = moments[0], *np.split(moments[1:], 2)
    mean = sums / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0))
    zero = (std == 0) & (mean == 0)
    return bool(np.all((np.abs(mean) <= 0.1) & (((std >= 0.5) & (std <= 2)) | zero)))
