"""The README's quick-start: a planted problem is solved and bytes are counted."""

import numpy as np

from sklearn_relu import ReLURegressor, make_relu_regression


def test_readme_quickstart_recovers_planted_coef():
    X, y, w_star = make_relu_regression(
        n_samples=4000, n_features=40, coef=True, random_state=0
    )
    est = ReLURegressor(solver="qsgd", bits=8, random_state=0).fit(X, y)
    error = np.linalg.norm(est.coef_ - w_star) / np.linalg.norm(w_star)
    assert error < 1e-6
    assert abs(est.intercept_) < 1e-6
    record = est.comm_record_
    # 41 parameters (40 coefficients and the intercept) at 8 bits: 41 bytes
    # of levels and a 16-byte header (12 fixed, 4 for the norm) with one norm, per message.
    assert record.bytes_sent == record.n_messages * (41 + 16)
    assert record.float64_bytes == record.n_messages * 8 * 41
