"""
Loss against steps and against bytes
====================================

:class:`~sklearn_relu.ConvergenceDisplay` draws a fit's loss, epoch by epoch,
against its SGD steps, the bytes its workers sent, or its seconds. Drawn again
on the same axes, it compares fits: here exact SGD and QSGD at 8 and 4 bits on
one planted problem, split over 4 workers. Against steps QSGD at 4 bits needs
a few more than SGD; against bytes both QSGD fits get as far on a fraction of
SGD's traffic.
"""

import matplotlib.pyplot as plt

from sklearn_relu import ConvergenceDisplay, ReLURegressor, make_relu_regression

X, y = make_relu_regression(n_samples=4000, n_features=100, random_state=0)

fits = [
    ReLURegressor(solver=solver, bits=bits, batch_size=200, n_workers=4,
                  fit_intercept=False, tol=None, max_iter=15, random_state=0).fit(X, y)
    for solver, bits in (("sgd", 8), ("qsgd", 8), ("qsgd", 4))
]

fig, (by_steps, by_bytes) = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
for est in fits:
    ConvergenceDisplay.from_estimator(est, x="steps", ax=by_steps, marker="o")
    ConvergenceDisplay.from_estimator(est, x="bytes", ax=by_bytes, marker="o")
by_bytes.set_xscale("log")
fig.suptitle("n = 4000, d = 100, 4 workers")
fig.tight_layout()
plt.show()
