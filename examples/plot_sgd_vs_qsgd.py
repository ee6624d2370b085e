"""
SGD and QSGD on a planted ReLU
==============================

Fit the same planted problem by exact SGD and by QSGD at 8 and 4 bits, split
over 4 workers, and compare the loss per epoch and the bytes the workers sent.
A small problem (d = 100), so it runs in about a second.
"""

import matplotlib.pyplot as plt
import numpy as np

from sklearn_relu import ReLURegressor, make_relu_regression

X, y, w_star = make_relu_regression(
    n_samples=4000, n_features=100, coef=True, random_state=0
)

fig, ax = plt.subplots(figsize=(6, 4))
for solver, bits in (("sgd", 8), ("qsgd", 8), ("qsgd", 4)):
    est = ReLURegressor(
        solver=solver, bits=bits, batch_size=200, n_workers=4,
        fit_intercept=False, tol=None, max_iter=15, random_state=0,
    ).fit(X, y)
    label = "SGD" if solver == "sgd" else f"QSGD, {bits} bits"
    error = np.linalg.norm(est.coef_ - w_star) / np.linalg.norm(w_star)
    record = est.comm_record_
    print(
        f"{label:>13}: relative error {error:.1e} after {est.t_} steps, "
        f"{record.bytes_sent / 1e3:.0f} kB sent "
        f"({100 * record.bytes_sent / record.float64_bytes:.1f}% of float64's)"
    )
    ax.semilogy(np.arange(1, est.n_iter_ + 1), est.loss_curve_, "o-", label=label)

ax.set(xlabel="epoch", ylabel="mean batch loss", title="n = 4000, d = 100, 4 workers")
ax.legend()
fig.tight_layout()
plt.show()
