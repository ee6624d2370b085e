"""
Byzantine workers: the mean against the robust rules
====================================================

Ten workers fit a planted ReLU; the first four are Byzantine and send ``-4``
times their gradient (``attack="scaled"``). The mean follows them uphill and
diverges. The geometric median steps along the honest workers' gradients and
converges almost as fast as the mean does without attackers. Its
block-coordinate version (BGMD) steps a tenth of the coordinates at a time and
the coordinate-wise median ignores how coordinates vary together: both
withstand the attack but converge more slowly with 80 points a worker. The
attackers lie in the start's statistics too, which the robust rules combine
the same way (see :doc:`/robust`).
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np

from sklearn_relu import ReLURegressor, make_relu_regression

X, y, w = make_relu_regression(n_samples=4000, n_features=50, coef=True, random_state=0)


def error_curve(rule, n_byzantine, epochs=25):
    """Relative error after each epoch (5 steps), until the fit diverges."""
    est = ReLURegressor(
        aggregation=rule, n_byzantine=n_byzantine, attack="scaled", n_workers=10,
        batch_size=800, max_iter=1, tol=None, warm_start=True, fit_intercept=False,
        # With attackers the mean's start and curvature measurement are
        # themselves attacked (the fit refuses their statistics): a zero start
        # and a fixed step show its divergence instead.
        learning_rate=0.5 if rule == "mean" and n_byzantine else "auto", random_state=0,
        init="zeros" if rule == "mean" and n_byzantine else "spectral",
    )
    steps, errors = [], []
    for _ in range(epochs):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the mean warns: no defence
                est.fit(X, y)
        except FloatingPointError:
            break  # diverged
        steps.append(est.t_)
        errors.append(np.linalg.norm(est.coef_ - w) / np.linalg.norm(w))
    return steps, errors


fig, ax = plt.subplots(figsize=(6, 4))
steps, errors = error_curve("mean", 0)
ax.semilogy(steps, errors, "k:", label="mean, no attacker")
for rule in ["mean", "geometric_median", "bgmd", "median"]:
    steps, errors = error_curve(rule, 4)
    ax.semilogy(steps, errors, marker=".", label=f"{rule}, 4 of 10 Byzantine")
    final = f"{errors[-1]:.1e} after {steps[-1]} steps" if errors else "diverged at once"
    print(f"{rule:17s}: {final}")
ax.set(xlabel="SGD steps", ylabel="relative error ||w - w*|| / ||w*||",
       title='attack="scaled" (-4 g) on 4 of 10 workers')
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
