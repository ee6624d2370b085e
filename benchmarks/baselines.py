"""The loops a user would write by hand, to measure the package against.

Both take the same step size, batch size and spectral start as the estimator
(one full gradient step from zero with an exact line search, docs/theory.rst, "The start"), draw
each batch uniformly with replacement, and stop at the first step whose relative
error ``||w - w*|| / ||w*||`` is at most ``target``. Their time includes the start.
"""

import time

import numpy as np


def naive_numpy_gradient(X, y, w, rows):
    """The textbook mini-batch gradient: gather the batch, two products."""
    X_batch = X[rows]
    z = X_batch @ w
    residual = np.maximum(z, 0) - y[rows]
    return X_batch.T @ (residual * (z > 0)) / rows.shape[0]


def naive_numpy_fit(X, y, w_star, *, learning_rate, batch_size, target, max_steps,
                    seed=0):
    """Plain NumPy SGD to relative error ``target``; returns a result dict."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    u = X.T @ y
    p = np.maximum(X @ u, 0)
    w = (y @ p) / (p @ p) * u
    norm_star = np.linalg.norm(w_star)
    errors = [np.linalg.norm(w - w_star) / norm_star]
    times = [time.perf_counter() - start]
    for _ in range(max_steps):
        rows = rng.integers(0, X.shape[0], batch_size)
        w -= learning_rate * naive_numpy_gradient(X, y, w, rows)
        errors.append(np.linalg.norm(w - w_star) / norm_star)
        times.append(time.perf_counter() - start)
        if errors[-1] <= target:
            break
    return {"seconds": times[-1], "steps": len(errors) - 1, "errors": errors,
            "times": times}


def torch_fit(X, y, w_star, *, learning_rate, batch_size, target, max_steps, seed=0):
    """A straightforward PyTorch autograd loop; ``None`` if torch is missing."""
    try:
        import torch
    except ImportError:
        return None
    start = time.perf_counter()
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)  # shares memory, no copy
    w_star_t = torch.from_numpy(w_star)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        u = X_t.T @ y_t
        p = torch.relu(X_t @ u)
        w0 = (y_t @ p) / (p @ p) * u
    w = w0.clone().requires_grad_(True)
    norm_star = torch.linalg.norm(w_star_t)
    errors = [float(torch.linalg.norm(w.detach() - w_star_t) / norm_star)]
    times = [time.perf_counter() - start]
    for _ in range(max_steps):
        rows = torch.randint(0, X_t.shape[0], (batch_size,), generator=generator)
        prediction = torch.relu(X_t[rows] @ w)
        loss = 0.5 * ((prediction - y_t[rows]) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= learning_rate * w.grad
        w.grad = None
        errors.append(float(torch.linalg.norm(w.detach() - w_star_t) / norm_star))
        times.append(time.perf_counter() - start)
        if errors[-1] <= target:
            break
    return {"seconds": times[-1], "steps": len(errors) - 1, "errors": errors,
            "times": times}


def torch_step(X_t, y_t, w, rows):
    """One autograd step's gradient on the batch ``rows`` (for per-step timing)."""
    import torch

    w = w.detach().requires_grad_(True)
    prediction = torch.relu(X_t[rows] @ w)
    loss = 0.5 * ((prediction - y_t[rows]) ** 2).mean()
    loss.backward()
    return w.grad
