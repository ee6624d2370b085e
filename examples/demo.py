"""
Fit a ReLU by SGD and by 8-bit QSGD
===================================

The main job of the package in a few lines: draw a planted ReLU problem
(:ref:`theory-model`), fit it with exact SGD and with 8-bit QSGD split over 4
workers, and print the relative error reached, the steps taken and the bytes the
workers sent.
"""

import time

import numpy as np

from sklearn_relu import ReLURegressor, make_relu_regression

X, y, w_star = make_relu_regression(
    n_samples=20000, n_features=400, coef=True, random_state=0
)
print(f"planted ReLU: n={X.shape[0]}, d={X.shape[1]}, 4 workers, batch 1000")
for solver in ("sgd", "qsgd"):
    est = ReLURegressor(
        solver=solver, bits=8, batch_size=1000, n_workers=4,
        fit_intercept=False, random_state=0,
    )
    start = time.perf_counter()
    est.fit(X, y)
    seconds = time.perf_counter() - start
    error = np.linalg.norm(est.coef_ - w_star) / np.linalg.norm(w_star)
    record = est.comm_record_
    print(
        f"{solver:>4}: relative error {error:.2e} after {est.t_} steps "
        f"({est.n_iter_} epochs, {seconds:.2f} s); workers sent "
        f"{record.n_messages} messages, {record.bytes_sent / 1e6:.2f} MB "
        f"({100 * record.bytes_sent / record.float64_bytes:.1f}% of float64's bytes)"
    )
# Every message is self-describing: a header precedes its values, 8 bytes for
# SGD's float64 vector (kind, dtype, length), hence its 100.2%.
print("(SGD's float64 messages carry an 8-byte header: kind, dtype and length; "
      "QSGD's a 12-byte one and the norm)")
