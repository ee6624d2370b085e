"""The training and validation rows of a fit: the split early stopping holds
out, and the loss of the zero model, from ``y`` alone."""

import numpy as np
from sklearn.model_selection import train_test_split

__all__ = ["split_validation", "zero_model_loss"]


def split_validation(X, y, sample_weight, seed, validation_fraction):
    """Training and validation rows, as ``train_test_split`` draws them."""
    arrays = [X, y] + ([] if sample_weight is None else [sample_weight])
    split = train_test_split(*arrays, test_size=validation_fraction, random_state=seed)
    if split[2].shape[0] < 1 or split[1].shape[0] < 1:
        raise ValueError(
            "too few samples for early_stopping with validation_fraction="
            f"{validation_fraction}"
        )
    X, X_val, y, y_val = split[:4]
    sw, sw_val = (split[4], split[5]) if sample_weight is not None else (None, None)
    for part, weights in (("training", sw), ("validation", sw_val)):
        # Sparse weights can leave one side of the split with none: its
        # loss or its R^2 would divide by zero.
        if weights is not None and not weights.sum() > 0:
            raise ValueError(
                f"early_stopping's split (validation_fraction="
                f"{validation_fraction}) left the {part} rows with a total "
                "sample_weight of 0: give more rows a positive weight, or change "
                "validation_fraction or random_state"
            )
    return X, X_val, y, y_val, sw, sw_val


def zero_model_loss(y, sample_weight):
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
