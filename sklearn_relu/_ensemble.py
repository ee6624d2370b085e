"""Choosing among independent runs: the majority-consistent rule (docs/theory.rst,
"The ensemble rule")."""

import numpy as np

__all__ = ["select_consistent_run"]


def select_consistent_run(runs):
    """Index of the run that the most other runs agree with.

    For each run, take the distance to its ``floor(L/2)``-th nearest other run;
    return the run where that distance is smallest. If more than half the runs
    are within ``eps`` of the truth, the chosen run is within ``3 eps`` of it
    (after Tan and Vershynin), whatever the spoiled runs did.

    Parameters
    ----------
    runs : array-like of shape (n_runs, n_params)

    Returns
    -------
    index : int

    Examples
    --------
    >>> import numpy as np
    >>> runs = np.array([[1.0, 0.0], [1.1, 0.0], [50.0, 9.0], [0.9, 0.1]])
    >>> select_consistent_run(runs)
    0
    """
    runs = np.asarray(runs, dtype=np.float64)
    n_runs = runs.shape[0]
    if n_runs == 1:
        return 0
    with np.errstate(over="ignore", invalid="ignore"):
        distances = np.linalg.norm(runs[:, None, :] - runs[None, :, :], axis=-1)
    # A run with NaN or infinite entries is infinitely far from every run (itself
    # included): NaN distances would otherwise win the argmin below.
    distances[~np.isfinite(distances)] = np.inf
    distances[~np.all(np.isfinite(runs), axis=1)] = np.inf
    # Column 0 after sorting is the run itself (distance 0); column k is the k-th
    # nearest other run.
    kth = np.sort(distances, axis=1)[:, n_runs // 2]
    return int(np.argmin(kth))
