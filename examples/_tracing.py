"""What the paper reproductions share (not an example of its own): the error
curve of a fit, recorded by ``ReLURegressor``'s ``callback``, and its tables."""

import csv

import numpy as np


class ErrorTrace:
    """``ReLURegressor(callback=ErrorTrace(w_star, n_steps))``.

    Records the relative error ``||w_t - w*|| / ||w*||`` of the coefficients at
    the start of the fit and after every step (of the first run), and stops
    the fit after ``n_steps`` steps: ``errors[t]`` is the error after step
    ``t``.
    """

    def __init__(self, w_star, n_steps):
        self.w_star = np.asarray(w_star)
        self.n_steps = n_steps
        self.errors = []

    def __call__(self, info):
        coef = info.params[: self.w_star.shape[0]]
        self.errors.append(
            float(np.linalg.norm(coef - self.w_star) / np.linalg.norm(self.w_star))
        )
        return info.step >= self.n_steps


def first_reaching(errors, target):
    """First step whose error is at most ``target``, or None."""
    hits = np.flatnonzero(np.asarray(errors) <= target)
    return int(hits[0]) if hits.size else None


def write_table(rows, stem):
    """Write ``rows`` (a list of dicts) as ``stem.csv`` and a markdown ``stem.md``."""
    header = list(rows[0])
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[k]) for k in header) + " |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
