"""The planted-model targets shared by the sign-method and robust-aggregation
tests: d = 100, n = 20000, noiseless, seed 0; 10 workers draw 200 points each
a step (batch 2000: 10 steps an epoch)."""

import math

import numpy as np

from sklearn_relu import ReLURegressor, make_relu_regression


def planted_problem():
    return make_relu_regression(n_samples=20000, n_features=100, coef=True, random_state=0)


def relative_error(est, w):
    return np.linalg.norm(est.coef_ - w) / np.linalg.norm(w)


def steps_to(planted, target, max_steps, **params):
    """Steps (counted 100 at a time) until the relative error is below ``target``."""
    X, y, w = planted
    est = ReLURegressor(
        n_workers=10, batch_size=2000, max_iter=10, tol=None, warm_start=True,
        fit_intercept=False, random_state=0, **params,
    )
    while not (hasattr(est, "t_") and relative_error(est, w) < target):
        if getattr(est, "t_", 0) >= max_steps:
            return math.inf
        est.fit(X, y)
    return est.t_
