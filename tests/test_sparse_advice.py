"""The advice of a poor fit on sparse features names a scaler that keeps the
zeros: StandardScaler would center the columns into dense ones."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from sklearn_relu import ReLURegressor
from sklearn_relu._diagnostics import scaler_advice


def test_the_scaler_advice_keeps_sparse_features_sparse():
    assert "StandardScaler()" in scaler_advice(sparse=False)
    assert "MaxAbsScaler()" in scaler_advice(sparse=True)


def test_a_badly_scaled_sparse_fit_is_told_to_use_maxabsscaler():
    rng = np.random.default_rng(0)
    X = sp.random(2000, 6, density=0.5, random_state=0, format="csr")
    X = X @ sp.diags([1.0, 1.0, 1.0, 1.0, 1.0, 1e-3])  # one column 1000 times smaller
    w = np.array([1.0, 0.5, -0.5, 0.2, 0.3, 3000.0])
    y = np.maximum(X @ w, 0) + 0.01 * rng.standard_normal(2000)
    with pytest.warns(ConvergenceWarning, match="MaxAbsScaler"):
        ReLURegressor(max_iter=30, random_state=0).fit(sp.csr_matrix(X), y)
