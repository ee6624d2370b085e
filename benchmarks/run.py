"""Run the whole benchmark suite and write ``benchmarks/results/results.md`` + plots.

Usage::

    python -m benchmarks                 # everything (a few minutes)
    python -m benchmarks --only step,wire
    python -m benchmarks --quick         # smaller problem, for a smoke run

Every target of issue 4 is a ratio of two timings taken side by side in the same
run (``_timing.compare`` interleaves them), so a busy machine slows both sides.
Sections: ``step`` (one gradient step vs the memory floor, float32 vs float64,
codec time), ``memory`` (peak memory of ``fit`` above ``X``), ``fit`` (time to
relative error 1e-6 vs naive NumPy and PyTorch loops), ``wire`` (bytes on the
wire), ``backends`` (joblib / MPI per-step time vs in-process), ``small`` (an
epoch of a small problem vs scikit-learn's ``SGDRegressor``), ``elias``
(Elias-coded QSGD decode and encode vs packed, every width; benchmarks/elias_codec.py),
``byzfl`` (each robust aggregator vs ByzFL's same rule, one thread; benchmarks/robust_byzfl.py).
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._gradient import (
    KERNEL,
    batch_gradient,
    batch_gradient_numpy,
    batch_gradient_reference,
)
from sklearn_relu.backends import InProcessBackend, available_backends, get_backend
from sklearn_relu.compression import QSGD, Identity, theorem_3_2_bits

from . import baselines, elias_codec, robust_byzfl
from ._timing import compare, settle

RESULTS = Path(__file__).parent / "results"
SECTIONS = ("step", "memory", "fit", "wire", "backends", "small", "elias", "byzfl")
# Sections that build their own inputs: no planted data set is generated for them.
_NO_DATA = {"elias", "small", "byzfl"}


class Report:
    """Rows of the results table and free-form notes, written as markdown."""

    def __init__(self, folder):
        self.rows, self.notes, self.plots = [], [], []
        self.folder = folder  # plots go beside the results file

    def figure(self, name, target, measured, passed, section):
        mark = "n/a" if passed is None else ("PASS" if passed else "FAIL")
        command = f"`python -m benchmarks --only {section}`"
        self.rows.append((name, target, measured, mark, command))
        print(f"[{mark}] {name}: {measured} (target {target})", flush=True)

    def note(self, text):
        self.notes.append(text)
        print(text, flush=True)

    def write(self, path, header):
        lines = [header, "", "| figure | target | measured | pass | command |",
                 "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {note}" for note in self.notes]
        if self.plots:
            lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in self.plots]
        path.write_text("\n".join(lines) + "\n")


def machine_header(args):
    import sklearn
    import threadpoolctl

    blas = [
        f"{info.get('internal_api')} {info.get('version')} "
        f"({info.get('num_threads')} threads, {info.get('architecture')})"
        for info in threadpoolctl.threadpool_info()
        if info.get("user_api") == "blas"
    ]
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
         if line.startswith("model name")),
        platform.processor(),
    ) if os.path.exists("/proc/cpuinfo") else platform.processor()
    now = datetime.datetime.now(datetime.timezone.utc)
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"
    return "\n".join([
        "# sklearn_relu benchmark results",
        "",
        f"- date: {now:%Y-%m-%d %H:%M} UTC; command: `python -m benchmarks "
        + " ".join(sys.argv[1:]) + "`",
        f"- machine: {os.cpu_count()} cores, {cpu}; load average at start {load}",
        f"- python {platform.python_version()}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, BLAS: {'; '.join(blas) or '?'}",
        f"- problem: n={args.n}, d={args.d}, batch m={args.m}"
        + (" (--quick: not the sizes of the targets)" if args.quick else ""),
        "- every ratio below is between timings interleaved in the same run "
        "(medians over rounds); the machine may be shared, so expect noise.",
    ])


# -- data ------------------------------------------------------------------------
class Data:
    def __init__(self, n, d):
        start = time.perf_counter()
        self.X, self.y, self.w_star = make_relu_regression(
            n_samples=n, n_features=d, coef=True, random_state=0
        )
        self._X32 = None
        print(f"data: {n} x {d} in {time.perf_counter() - start:.1f} s", flush=True)
        # A freshly allocated array reads slowly until the kernel has backed it
        # (huge pages); time nothing until a full pass is steady.
        settle(lambda: self.X @ self.w_star)

    @property
    def X32(self):
        if self._X32 is None:
            self._X32 = self.X.astype(np.float32)
            self.y32 = self.y.astype(np.float32)
            settle(lambda: self._X32 @ self.w_star.astype(np.float32))
        return self._X32


def spectral_start(X, y):
    u = X.T @ y
    p = np.maximum(X @ u, 0)
    return (y @ p) / (p @ p) * u


# -- sections --------------------------------------------------------------------
def section_step(data, args, report, state):
    X, y, m = data.X, data.y, args.m
    n, d = X.shape
    X32, y32 = data.X32, data.y32
    w = spectral_start(X, y)
    w32 = w.astype(np.float32)
    rng = np.random.default_rng(1)
    n_blocks = n // m
    counter = [0]

    def floor(X_, w_):
        # One matrix-vector product over a contiguous m x d block, a different
        # block each call so that it is read from memory, as a batch is.
        def run():
            counter[0] = (counter[0] + 1) % n_blocks
            k = counter[0]
            return X_[k * m : (k + 1) * m] @ w_
        return run

    def step(X_, y_, w_, gradient=batch_gradient, **kwargs):
        def run():
            rows = rng.integers(0, n, m)
            return gradient(X_, y_, None, w_, rows, 1.0 / m, **kwargs)
        return run

    vector = batch_gradient(X, y, None, w, rng.integers(0, n, m), 1.0 / m)[0]

    def codec(compressor):
        def run():
            return compressor.decompress(compressor.compress(vector, rng))
        return run

    contenders = {
        "floor float64 (contiguous m x d matvec)": floor(X, w),
        "gradient step float64 (package)": step(X, y, w),
        "gradient step float64 (package, one thread)": step(X, y, w, n_threads=1),
        "gradient step float64 (NumPy path, no C kernel)": step(
            X, y, w, batch_gradient_numpy
        ),
        "gradient step float64 (naive gather + 2 matvecs)": step(
            X, y, w, batch_gradient_reference
        ),
        "floor float32": floor(X32, w32),
        "gradient step float32 (package)": step(X32, y32, w32),
        "QSGD bits=8 packed: quantize+encode+decode": codec(QSGD(8)),
        "QSGD bits=4 packed: quantize+encode+decode": codec(QSGD(4)),
        "QSGD bits=2 packed: quantize+encode+decode": codec(QSGD(2)),
        "QSGD bits=2 Elias: quantize+encode+decode": codec(QSGD(2, encoding="elias")),
    }
    times = compare(contenders, rounds=args.rounds)
    try:
        import torch

        X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
        w_t = torch.from_numpy(w.copy())
        generator = torch.Generator().manual_seed(0)

        def torch_run():
            rows = torch.randint(0, n, (m,), generator=generator)
            return baselines.torch_step(X_t, y_t, w_t, rows)

        # Timed in a group of its own, after the others: PyTorch's OpenMP
        # threads keep spinning after each call and would slow whatever ran
        # next. Scaled to the first group through the floor, timed in both.
        floor_name = "floor float64 (contiguous m x d matvec)"
        extra = compare({floor_name: contenders[floor_name], "torch": torch_run},
                        rounds=max(5, args.rounds // 2))
        times["gradient step float64 (PyTorch autograd)"] = (
            extra["torch"] / extra[floor_name] * times[floor_name]
        )
    except ImportError:
        report.note("PyTorch not installed: `pip install torch==2.13.0` for its baseline")
    state["step_times"] = times
    report.note(
        f"step section: the package's fast path is sklearn_relu._gradient.KERNEL = "
        f"{KERNEL!r}" + (" (the C kernel)" if KERNEL == "c" else
                         " (the C extension is not built: NumPy path)")
    )
    for name, seconds in times.items():
        report.note(f"step section: {name}: {seconds * 1e3:.3f} ms")

    floor64 = times["floor float64 (contiguous m x d matvec)"]
    step64 = times["gradient step float64 (package)"]
    step32 = times["gradient step float32 (package)"]
    ratio = step64 / floor64
    report.figure(
        f"one SGD step back to back, float64 (n={n}, d={d}, m={m}) / one m x d "
        "matvec",
        "<= 1.5", f"{ratio:.2f} ({step64 * 1e3:.2f} ms / {floor64 * 1e3:.2f} ms)",
        ratio <= 1.5, "step",
    )
    ratio32 = step32 / step64
    report.figure(
        "float32 step / float64 step, back to back", "<= 0.6",
        f"{ratio32:.2f} ({step32 * 1e3:.2f} ms / {step64 * 1e3:.2f} ms)",
        ratio32 <= 0.6, "step",
    )
    for bits, encoding in ((8, "packed"), (4, "packed"), (2, "packed"), (2, "Elias")):
        name = f"QSGD bits={bits} {encoding}: quantize+encode+decode"
        codec_ratio = times[name] / step64
        report.figure(
            f"QSGD bits={bits} {encoding}, d={d}: quantize+encode+decode / step",
            "<= 0.5", f"{codec_ratio:.3f} ({times[name] * 1e3:.3f} ms)",
            codec_ratio <= 0.5, "step",
        )
    _steps_inside_fit(data, args, report, floor(X, w), floor(X32, w32))
    naive = times["gradient step float64 (naive gather + 2 matvecs)"]
    report.note(
        f"naive NumPy step {naive * 1e3:.2f} ms = {naive / step64:.2f}x the package's"
    )
    _plot_steps(times, report)


def _steps_inside_fit(data, args, report, floor64, floor32):
    """A step as a fit takes it: the time difference of a 4-epoch and a 1-epoch
    fit over the steps between them, interleaved round by round with the floor
    (back to back, as above); the fits at a fixed step from zeros, so that
    only the steps differ. Also the step-by-step path that the compiled loop
    of steps replaced (sklearn_relu._steps), in the same rounds."""
    m = args.m
    n = data.X.shape[0]
    steps = 3 * math.ceil(n / m)  # the 3 epochs between the two fits

    def fit(X, y, epochs, fused=True):
        backend = InProcessBackend()
        backend._fused_steps = fused
        ReLURegressor(batch_size=m, max_iter=epochs, tol=None, learning_rate=0.2,
                      init="zeros", fit_intercept=False, backend=backend,
                      random_state=0).fit(X, y)

    def timed(function, *args_):
        start = time.perf_counter()
        function(*args_)
        return time.perf_counter() - start

    def back_to_back(function, calls=50):
        function()
        return timed(lambda: [function() for _ in range(calls)]) / calls

    X32, y32 = data.X32, data.y32
    contenders = {
        "float64": (data.X, data.y, True),
        "float32": (X32, y32, True),
        "float64, step by step": (data.X, data.y, False),
    }
    samples = {name: [] for name in ("floor float64", "floor float32", *contenders)}
    # 60 steps of a float32 fit are about 40 ms against fits of 100 ms or more:
    # many rounds, so that the medians of the differences settle.
    rounds = 3 if args.quick else 15
    for _ in range(rounds + 1):  # the first round warms up
        time.sleep(0.1)
        samples["floor float64"].append(back_to_back(floor64))
        time.sleep(0.1)
        samples["floor float32"].append(back_to_back(floor32))
        for name, (X, y, fused) in contenders.items():
            time.sleep(0.1)
            long_ = timed(fit, X, y, 4, fused)
            time.sleep(0.1)
            short = timed(fit, X, y, 1, fused)
            samples[name].append((long_ - short) / steps)
    times = {name: float(np.median(values[1:])) for name, values in samples.items()}
    report.note(
        f"step section, inside fit (n={n}, d={data.X.shape[1]}, m={m}; per step from "
        f"the difference of 4-epoch and 1-epoch fits, {rounds} interleaved rounds): "
        + "; ".join(f"{name} {seconds * 1e3:.3f} ms" for name, seconds in times.items())
    )
    floor = times["floor float64"]
    inside = times["float64"]
    ratio = inside / floor
    report.figure(
        f"one SGD step inside fit, float64 (n={n}, d={data.X.shape[1]}, m={m}) / one "
        "m x d matvec", "<= 1.3",
        f"{ratio:.2f} ({inside * 1e3:.2f} ms / {floor * 1e3:.2f} ms; step by step "
        f"{times['float64, step by step'] / floor:.2f})", ratio <= 1.3, "step",
    )
    ratio32 = times["float32"] / inside
    report.figure(
        "float32 step / float64 step, inside fit", "<= 0.6",
        f"{ratio32:.2f} ({times['float32'] * 1e3:.2f} ms / {inside * 1e3:.2f} ms)",
        ratio32 <= 0.6, "step",
    )


def section_memory(data, args, report, state):
    for dtype in (np.float64, np.float32):
        X = data.X if dtype == np.float64 else data.X32
        y = data.y if dtype == np.float64 else data.y32
        estimator = ReLURegressor(
            batch_size=args.m, max_iter=1, tol=None, fit_intercept=False,
            random_state=0,
        )
        tracemalloc.start()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        estimator.fit(X, y)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        ratio = (peak - before) / X.nbytes
        report.figure(
            f"peak memory of fit above baseline / size of X ({np.dtype(dtype).name})",
            "<= 1.25", f"{ratio:.3f} ({(peak - before) / 2**20:.1f} MiB over "
            f"{X.nbytes / 2**20:.0f} MiB)", ratio <= 1.25, "memory",
        )
        if dtype == np.float32:
            report.figure(
                "float32 X fitted in float32 (coef_ dtype)", "float32",
                str(estimator.coef_.dtype), estimator.coef_.dtype == np.float32,
                "memory",
            )


def _reached(w_star, target):
    """A ``ReLURegressor`` callback that stops the fit at the first step whose
    relative error to ``w_star`` is at most ``target``."""
    norm = np.linalg.norm(w_star)

    def reached(info):
        return np.linalg.norm(info.params[: w_star.shape[0]] - w_star) <= target * norm

    return reached


def section_fit(data, args, report, state):
    X, y, w_star, m = data.X, data.y, data.w_star, args.m
    n, d = X.shape
    # docs/theory.rst, "Mini-batch SGD and the automatic step", for all three loops
    learning_rate = 2 * m / (m + 2 * d)
    target = 1e-6
    common = dict(batch_size=m, learning_rate=learning_rate, fit_intercept=False,
                  init="spectral", random_state=0, tol=None)
    steps_per_epoch = math.ceil(n / m)
    # Untimed: how many steps this seed needs, so the timed fit runs exactly the
    # epochs it takes (a fit stops at epoch ends).
    recorder = ReLURegressor(
        max_iter=args.max_epochs, callback=_reached(w_star, target), **common
    ).fit(X, y)
    if not recorder.stopped_by_callback_:
        report.note("fit section: the package never reached the target error")
        return
    epochs = math.ceil(recorder.t_ / steps_per_epoch)

    budget = dict(learning_rate=learning_rate, batch_size=m, target=target,
                  max_steps=args.max_epochs * steps_per_epoch)

    def package(max_iter=epochs):
        start = time.perf_counter()
        estimator = ReLURegressor(max_iter=max_iter, **common).fit(X, y)
        return estimator, time.perf_counter() - start

    # Interleaved rounds, medians: one fit is a single sample of a shared
    # machine. A pause before each contender lets the previous one's BLAS and
    # OpenMP threads stop spinning.
    runs = {"package": [], "naive NumPy": [], "PyTorch": []}
    one_epoch = []  # for the fit's cost beyond its steps
    for _ in range(args.fit_rounds):
        time.sleep(0.25)
        estimator, seconds = package()
        runs["package"].append({"seconds": seconds, "steps": estimator.t_})
        one_epoch.append(package(1)[1])
        time.sleep(0.25)
        runs["naive NumPy"].append(baselines.naive_numpy_fit(X, y, w_star, **budget))
        time.sleep(0.25)
        torch_result = baselines.torch_fit(X, y, w_star, **budget)
        if torch_result is not None:
            runs["PyTorch"].append(torch_result)
    results = {}
    for name, samples in runs.items():
        if samples:
            median = sorted(samples, key=lambda r: r["seconds"])[len(samples) // 2]
            results[name] = dict(median, all_seconds=[r["seconds"] for r in samples])
    ours = results["package"]["seconds"]
    error = np.linalg.norm(estimator.coef_ - w_star) / np.linalg.norm(w_star)
    report.note(
        f"fit section: package reached {error:.2e} in {estimator.t_} steps "
        f"({epochs} epochs), {ours:.2f} s including validation, start and step size "
        f"(median of {args.fit_rounds} interleaved rounds; all: "
        + ", ".join(f"{name} " + "/".join(f"{t:.2f}" for t in r["all_seconds"]) + " s"
                    for name, r in results.items()) + ")"
    )
    # Two fits that differ only in their number of steps give the cost per step
    # and what the fit spends outside its steps: validation, start, loss checks.
    short = float(np.median(one_epoch))
    per_step = (ours - short) / (estimator.t_ - steps_per_epoch)
    fixed = short - steps_per_epoch * per_step
    starts = ", ".join(f"{name} {r['times'][0]:.3f} s" for name, r in results.items()
                       if "times" in r)
    report.note(
        f"fit section: package {per_step * 1e3:.2f} ms per step in the fit, and "
        f"{fixed:.3f} s outside the steps (validation, spectral start, exact loss at "
        f"start and end); the baselines' spectral start: {starts}"
    )
    for name in ("naive NumPy", "PyTorch"):
        if name not in results:
            report.figure(f"fit to 1e-6: {name} time / package time", ">= 4",
                          "baseline not installed", None, "fit")
            continue
        other = results[name]
        reached = other["errors"][-1] <= target
        speedup = other["seconds"] / ours
        report.figure(
            f"fit to rel. error 1e-6 (n={n}, d={d}): {name} time / package time",
            ">= 4",
            f"{speedup:.2f} ({other['seconds']:.2f} s, {other['steps']} steps vs "
            f"{ours:.2f} s, {estimator.t_} steps)"
            + ("" if reached else " -- baseline did not reach 1e-6"),
            speedup >= 4, "fit",
        )
    state["fit"] = results
    _plot_fit(results, report)


def section_wire(data, args, report, state):
    X, y, m = data.X, data.y, args.m
    n, d = X.shape
    rng = np.random.default_rng(2)
    w = spectral_start(X, y)
    gradients = [
        batch_gradient(X, y, None, w, rng.integers(0, n, m), 1.0 / m)[0]
        for _ in range(args.wire_vectors)
    ]
    float64_bytes = len(Identity().compress(gradients[0]))
    exact = True
    sizes = {}
    for bits in range(2, 17):
        q = QSGD(bits)
        header = len(q.compress(np.zeros(0)))  # everything that is not levels
        for vector in gradients[:3]:
            message = q.compress(vector, rng)
            expected = header + 4 + math.ceil(d * bits / 8)  # + one float32 norm
            exact &= len(message) == expected
        sizes[bits] = len(message)
    report.figure(
        f"packed QSGD message = ceil(d*b/8) + header, every b in [2, 16] (d={d})",
        "exact", "exact" if exact else "MISMATCH", exact, "wire",
    )
    elias = {}
    for bits in (2, 3, 4, 8):
        q = QSGD(bits, encoding="elias")
        lengths = np.array([len(q.compress(v, rng)) for v in gradients])
        framing = len(q.compress(np.zeros(0)))  # tag, sizes, count: not in Th. 3.2
        code_bits = 8 * (lengths - framing)  # the float32 norm + the codes
        bound = theorem_3_2_bits(d, q.levels)
        elias[bits] = lengths.mean()
        report.figure(
            f"Elias QSGD bits={bits}, d={d}: mean norm+code bits / Theorem 3.2 bound",
            "<= 1", f"{code_bits.mean() / bound:.3f} ({code_bits.mean():.0f} of "
            f"{bound:.0f} bits; {lengths.mean():.0f} bytes with framing)",
            code_bits.mean() <= bound, "wire",
        )
        if bits == 2:
            share = lengths.max() / float64_bytes
            report.figure(
                f"Elias QSGD bits=2, d={d}: largest message / float64 message",
                "< 0.01", f"{share:.4f} ({lengths.max()} of {float64_bytes} bytes)",
                share < 0.01, "wire",
            )
    _plot_wire(sizes, elias, float64_bytes, d, report)


def section_backends(data, args, report, state):
    n_rows = min(args.backend_rows, data.X.shape[0])
    X, y = data.X[:n_rows], data.y[:n_rows]
    m, d = args.m, X.shape[1]
    params = data.w_star * 0.9

    def update(p, g):
        return p  # time the backend's step, not the drift of the model

    # MPI needs its own job (mpiexec): timed below by _mpi_step_times.
    names = ["inprocess"] + [b for b in ("joblib",) if b in available_backends()]
    for missing in sorted({"joblib"} - set(available_backends())):
        report.note(f"backends: '{missing}' is not registered; skipped")
        report.figure(f"{missing} backend, 2 workers: step time / in-process", "<= 1.3",
                      "not registered yet", None, "backends")
    started = {}
    try:
        for name in names:
            try:
                backend = get_backend(name)
                backend.start(X, y, None, n_workers=2, batch_size=m,
                              compressor=Identity())
                backend.reseed(0)
                backend.step(params, update)
                started[name] = backend
            except Exception as error:  # report, do not stop the suite
                report.note(f"backends: '{name}' could not start: {error!r}")
        contenders = {
            name: (lambda b=backend: b.step(params, update))
            for name, backend in started.items()
        }
        times = compare(contenders, rounds=args.rounds)
    finally:
        for backend in started.values():
            backend.stop()
    for name, seconds in times.items():
        report.note(f"backends: {name}, 2 workers, m={m}, d={d}: "
                    f"{seconds * 1e3:.2f} ms per step")
    for name in names[1:]:
        if name not in times:
            report.figure(f"{name} backend, 2 workers: step time / in-process",
                          "<= 1.3", "failed to start", False, "backends")
            continue
        ratio = times[name] / times["inprocess"]
        report.figure(
            f"{name} backend, 2 workers (m={m}, d={d}): step time / in-process",
            "<= 1.3", f"{ratio:.2f} ({times[name] * 1e3:.2f} ms / "
            f"{times['inprocess'] * 1e3:.2f} ms)", ratio <= 1.3, "backends",
        )
    _mpi_step_times(n_rows, m, d, args, report)
    _mpi_oversubscribed(args, report)


def _mpiexec():
    """The mpiexec beside this Python (pip's mpich), else on the PATH; None
    without mpi4py or mpiexec."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        mpiexec = shutil.which("mpiexec")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return str(mpiexec) if mpiexec else None


def _mpi_oversubscribed(args, report):
    """One rank more than the cores against as many ranks as cores, per step
    (d = 100): benchmarks/mpi_oversubscribed.py, one job, interleaved."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1
    )
    ranks = cores + 1
    name = f"mpi backend, {ranks} ranks on {cores} cores (wait='auto') / {cores} ranks"
    mpiexec = _mpiexec()
    if mpiexec is None:
        report.figure(f"{name}, per step", "<= 1.3", "mpi4py/mpiexec not installed",
                      None, "backends")
        return
    script = Path(__file__).parent / "mpi_oversubscribed.py"
    options = ["--rounds", "3" if args.quick else "7",
               "--steps", "200" if args.quick else "1000"]
    throttle = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "1"}

    def job(environment):
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "over.json"
            command = [mpiexec, "-n", str(ranks), sys.executable, "-m", "mpi4py",
                       str(script), *options, "--out", str(out)]
            try:
                done = subprocess.run(command, capture_output=True, text=True,
                                      timeout=900, env={**os.environ, **environment})
                result = json.loads(out.read_text()) if done.returncode == 0 else None
            except (subprocess.TimeoutExpired, OSError, ValueError) as error:
                done, result = None, repr(error)
        if not isinstance(result, dict):
            result = result or (done.stderr.strip().splitlines() or ["?"])[-1]
        return result

    result = job({})
    # MPICH's own remedy, in a job of its own: polls that make no progress
    # sleep a microsecond now and then.
    throttled = job(throttle)
    if isinstance(throttled, dict):
        report.note(
            "backends: the same job with MPIR_CVAR_CH4_PROGRESS_THROTTLE=1 (MPICH "
            "sleeps 1 us after polls without progress): " + "; ".join(
                f"wait='{policy}' {throttled[f'{policy}, {ranks} ranks'] * 1e3:.3f} ms "
                f"vs {throttled[f'{policy}, {cores} ranks'] * 1e3:.3f} ms"
                for policy in ("busy", "yield", "sleep", "auto")
            )
        )
    else:
        report.note(f"backends: the throttled MPI job failed: {throttled}")
    if not isinstance(result, dict):
        report.note(f"backends: the oversubscribed MPI job failed: {result}")
        report.figure(f"{name}, per step", "<= 1.3", "MPI job failed", False,
                      "backends")
        return
    more, fewer = f"{ranks} ranks", f"{cores} ranks"
    report.note(
        f"backends: MPI steps, SGD, d={result['d']}, {result['m']} points a step, one "
        f"thread a rank, {result['ranks']} ranks on {result['cores']} cores against "
        f"{cores} ranks (the last rank sleeping) in one job: " + "; ".join(
            f"wait='{policy}' {result[f'{policy}, {more}'] * 1e3:.3f} ms vs "
            f"{result[f'{policy}, {fewer}'] * 1e3:.3f} ms"
            for policy in ("busy", "yield", "sleep", "auto")
        ) + f" (auto is '{result['auto_policy']}' here). Command: mpiexec -n "
        f"{ranks} python -m mpi4py benchmarks/mpi_oversubscribed.py " + " ".join(options)
    )
    if f"auto, {more}, cpu" in result:
        # What the cores did: the CPU the ranks burnt a step against the
        # slowest rank's gradient, the part of a step no waiting policy removes.
        report.note(
            f"backends: the same job, CPU a step summed over the ranks that stepped "
            f"(and the slowest rank's gradient), wait='auto': {ranks} ranks "
            f"{result[f'auto, {more}, cpu'] * 1e3:.3f} ms "
            f"({result[f'auto, {more}, gradient'] * 1e3:.3f} ms), {cores} ranks "
            f"{result[f'auto, {fewer}, cpu'] * 1e3:.3f} ms "
            f"({result[f'auto, {fewer}, gradient'] * 1e3:.3f} ms)"
        )
    step_more, step_fewer = result[f"auto, {more}"], result[f"auto, {fewer}"]
    ratio = step_more / step_fewer
    busy = result[f"busy, {more}"] / result[f"busy, {fewer}"]
    problem = f"SGD, d={result['d']}, m={result['m']}"
    report.figure(
        f"{name}, per step ({problem})", "<= 1.3",
        f"{ratio:.2f} ({step_more * 1e3:.3f} ms / {step_fewer * 1e3:.3f} ms; "
        f"wait='busy': {busy:.2f})",
        ratio <= 1.3, "backends",
    )
    # No waiting policy can do better than two turns of one rank's share of a
    # step: a step needs every rank's share, and with one rank more than the
    # cores, one core runs two of them, one after the other (docs/user_guide.rst,
    # "More ranks than cores"). One rank's share is timed alone in the job, the
    # quicker of its two ways to exchange.
    floor = 2 * min(result["busy, 1 rank"], result["sleep, 1 rank"])
    report.figure(
        f"mpi backend, {ranks} ranks on {cores} cores (wait='auto'), per step / twice "
        f"one rank's step alone, the floor of a step that waits for every rank "
        f"({problem})", "<= 1.3",
        f"{step_more / floor:.2f} ({step_more * 1e3:.3f} ms / {floor * 1e3:.3f} ms; "
        f"wait='busy': {result[f'busy, {more}'] / floor:.2f})",
        step_more / floor <= 1.3, "backends",
    )
    # Whether waiting ranks still poll: the CPU they burn a step.
    cpu, cpu_busy = result[f"auto, {more}, cpu"], result[f"busy, {more}, cpu"]
    report.figure(
        f"mpi backend, {ranks} ranks on {cores} cores: CPU a step over the ranks, "
        f"wait='auto' / wait='busy' ({problem})", "< 1",
        f"{cpu / cpu_busy:.2f} ({cpu * 1e3:.3f} ms / {cpu_busy * 1e3:.3f} ms)",
        cpu / cpu_busy < 1, "backends",
    )


def _mpi_step_times(n_rows, m, d, args, report):
    """``mpiexec -n 2`` runs benchmarks/mpi_step.py, which times the MPI step and
    the in-process step side by side in that job (see its docstring)."""
    name = "mpi backend, 2 ranks (mpiexec -n 2)"
    mpiexec = _mpiexec()
    if not mpiexec:
        report.note("backends: mpi4py or mpiexec missing (pip install "
                    '"sklearn-relu[mpi]"); MPI step not timed')
        report.figure(f"{name}: step time / in-process", "<= 1.3",
                      "mpi4py/mpiexec not installed", None, "backends")
        return
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "mpi.json"
        command = [str(mpiexec), "-n", "2", sys.executable, "-m", "mpi4py",
                   str(Path(__file__).parent / "mpi_step.py"), "--rows", str(n_rows),
                   "--d", str(d), "--m", str(m), "--rounds", str(args.rounds),
                   "--out", str(out)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            result = json.loads(out.read_text()) if done.returncode == 0 else None
        except (subprocess.TimeoutExpired, OSError, ValueError) as error:
            done, result = None, repr(error)
        if not isinstance(result, dict):
            detail = result or (done.stderr.strip().splitlines() or ["?"])[-1]
            report.note(f"backends: the MPI job failed: {detail}")
            report.figure(f"{name}: step time / in-process", "<= 1.3",
                          "MPI job failed", False, "backends")
            return
    ratio = result["mpi"] / result["inprocess"]
    report.note(
        f"backends: mpi, 2 ranks x 1 thread (gradient and BLAS), m={m}, d={d}: "
        f"{result['mpi'] * 1e3:.2f} ms per step; in-process in the same MPI job, "
        f"2 workers on rank 0 with 2 threads while rank 1 sleeps: "
        f"{result['inprocess'] * 1e3:.2f} ms. Both use the 2 cores: one rank per "
        "core against two threads in one process (2 ranks x 2 threads would "
        "oversubscribe the cores). Command: " + " ".join(
            ["mpiexec -n 2 python -m mpi4py benchmarks/mpi_step.py"] + command[7:-2])
    )
    report.figure(
        f"{name}, m={m}, d={d}: step time / in-process", "<= 1.3",
        f"{ratio:.2f} ({result['mpi'] * 1e3:.2f} ms / "
        f"{result['inprocess'] * 1e3:.2f} ms)", ratio <= 1.3, "backends",
    )


def section_elias(data, args, report, state):
    d = 10**5 if args.quick else 10**6
    report.note(f"elias section: d={d}, the package's Elias path is "
                f"{elias_codec.ELIAS_KERNEL!r}")
    for name, target, measured, passed in elias_codec.measure(d, rounds=args.rounds):
        report.figure(name, target, measured, passed, "elias")


def section_byzfl(data, args, report, state):
    dims = (4000,) if args.quick else (4000, 100000)
    rows = robust_byzfl.measure(dims, rounds=args.rounds)
    if rows is None:
        report.note('byzfl section skipped: ByzFL is not installed (pip install -e ".[bench]")')
        return
    for rule, d, ours, theirs, ratio, passed, note in rows:
        report.figure(
            f"{rule}, W=16, d={d}, one thread: package / ByzFL" + (f" ({note})" if note else ""),
            f"<= {robust_byzfl.TARGET}", f"{ratio:.2f} ({ours:.3f} ms / {theirs:.3f} ms)",
            passed, "byzfl",
        )


def _epoch_seconds(fit, epochs):
    """Seconds per epoch of ``fit(max_iter)``, from the difference of an
    ``epochs``-epoch and a 1-epoch fit (what the fit adds per epoch, without
    its validation and start, the same in both), and the 1-epoch fit's."""
    times = []
    for max_iter in (epochs, 1):
        start = time.perf_counter()
        fit(max_iter)
        times.append(time.perf_counter() - start)
    return (times[0] - times[1]) / (epochs - 1), times[1]


def section_small(data, args, report, state):
    """One epoch of a small problem (n = 200000, d = 100, batch 200, one
    in-process worker) against one epoch of scikit-learn's SGDRegressor on the
    same data, both as fits see it; the package with its compiled loop of
    steps and with the step-by-step path it replaces."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDRegressor

    n, d = (20000, 100) if args.quick else (200000, 100)
    X, y = make_relu_regression(n_samples=n, n_features=d, random_state=0)
    settle(lambda: X @ np.ones(d))

    def ours(solver, fused=True):
        # A fixed step: "auto" measures the curvature, passes over X that
        # both fits make and that only add noise to their difference.
        def fit(max_iter):
            backend = InProcessBackend()
            backend._fused_steps = fused
            ReLURegressor(solver=solver, bits=8, batch_size=200, max_iter=max_iter,
                          tol=None, learning_rate=0.05, backend=backend,
                          random_state=0).fit(X, y)
        return fit

    def sklearn_fit(max_iter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            SGDRegressor(max_iter=max_iter, tol=None, random_state=0).fit(X, y)

    contenders = {
        "SGDRegressor": sklearn_fit,
        "sgd": ours("sgd"),
        "qsgd": ours("qsgd"),
        "sgd, step by step": ours("sgd", fused=False),
        "qsgd, step by step": ours("qsgd", fused=False),
    }
    rounds, epochs = (3, 3) if args.quick else (5, 6)
    epoch, whole = {}, {}
    # Interleaved: each round times every contender's two fits in turn.
    samples = {name: ([], []) for name in contenders}
    for _ in range(rounds):
        for name, fit in contenders.items():
            long_, short_ = _epoch_seconds(fit, epochs)
            samples[name][0].append(long_)
            samples[name][1].append(short_)
    for name, (long_, short_) in samples.items():
        epoch[name], whole[name] = float(np.median(long_)), float(np.median(short_))
    reference = epoch["SGDRegressor"]
    report.note(
        f"small section (n={n}, d={d}, batch 200, one in-process worker): seconds "
        f"per epoch from the difference of {epochs}-epoch and 1-epoch fits, medians of "
        f"{rounds} interleaved rounds: " + "; ".join(
            f"{name} {epoch[name] * 1e3:.1f} ms an epoch ({whole[name] * 1e3:.0f} ms "
            "for a whole 1-epoch fit)" for name in contenders
        )
    )
    for solver, target in (("sgd", 0.4), ("qsgd", 0.6)):
        label = "SGD" if solver == "sgd" else "8-bit QSGD"
        ratio = epoch[solver] / reference
        report.figure(
            f"one epoch, {label} (n={n}, d={d}, batch 200, in-process) / one "
            "SGDRegressor epoch", f"<= {target}",
            f"{ratio:.2f} ({epoch[solver] * 1e3:.1f} ms / {reference * 1e3:.1f} ms; "
            f"step by step: {epoch[solver + ', step by step'] / reference:.2f})",
            ratio <= target, "small",
        )


# -- plots -----------------------------------------------------------------------
def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(fig, name, report):
    fig.tight_layout()
    fig.savefig(report.folder / name, dpi=110)
    report.plots.append(name)


def _plot_steps(times, report):
    plt = _pyplot()
    if plt is None:
        return
    names = [k for k in times if "QSGD" not in k]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.barh(names, [times[k] * 1e3 for k in names], color="tab:blue")
    ax.set_xlabel("ms per call (median, interleaved)")
    ax.set_title("One mini-batch gradient step vs the memory floor")
    ax.invert_yaxis()
    _save(fig, "step_times.png", report)
    plt.close(fig)


def _plot_fit(results, report):
    plt = _pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        if "times" in result:
            ax.semilogy(result["times"], result["errors"], label=name)
    ours = results["package"]
    ax.axvline(ours["seconds"], color="k", ls="--",
               label=f"package fit: {ours['seconds']:.2f} s")
    ax.axhline(1e-6, color="grey", lw=0.8)
    ax.set_xlabel("seconds since start (incl. spectral init)")
    ax.set_ylabel("relative error")
    ax.set_title("Time to relative error 1e-6 (planted model)")
    ax.legend()
    _save(fig, "fit_time.png", report)
    plt.close(fig)


def _plot_wire(sizes, elias, float64_bytes, d, report):
    plt = _pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(list(sizes), list(sizes.values()), "o-", label="QSGD packed")
    ax.semilogy(list(elias), list(elias.values()), "s-", label="QSGD Elias (mean)")
    ax.axhline(float64_bytes, color="k", ls="--", label="float64")
    ax.axhline(float64_bytes / 100, color="grey", ls=":", label="float64 / 100")
    ax.set_xlabel("bits per coordinate")
    ax.set_ylabel(f"bytes per message (d={d})")
    ax.legend()
    _save(fig, "message_sizes.png", report)
    plt.close(fig)


# -- entry point -------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="comma-separated sections: " + ", ".join(SECTIONS))
    parser.add_argument("--quick", action="store_true",
                        help="small problem and few rounds (a smoke run)")
    parser.add_argument("--out", default=None,
                        help="results file (default benchmarks/results/results.md); "
                        "plots are written beside it")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    args.n, args.d, args.m = (2000, 400, 100) if args.quick else (20000, 4000, 1000)
    args.rounds = 4 if args.quick else 10
    args.max_epochs = 200
    args.fit_rounds = 1 if args.quick else 5
    args.wire_vectors = 5 if args.quick else 20
    args.backend_rows = 8000 if not args.quick else 2000
    out = Path(args.out) if args.out else RESULTS / "results.md"
    out.parent.mkdir(parents=True, exist_ok=True)

    header = machine_header(args)
    report = Report(out.parent)
    data = Data(args.n, args.d) if set(sections) - _NO_DATA else None
    state = {}
    started = time.perf_counter()
    for section in SECTIONS:
        if section in sections:
            t0 = time.perf_counter()
            globals()[f"section_{section}"](data, args, report, state)
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            report.note(
                f"section {section} took {time.perf_counter() - t0:.0f} s "
                f"(1-minute load average after it: {load:.2f}; above ~1 another "
                "process shared the 2 cores and parallel timings suffer)"
            )
    report.note(f"suite took {time.perf_counter() - started:.0f} s")
    report.write(out, header)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
