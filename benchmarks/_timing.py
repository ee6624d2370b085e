"""Side-by-side timing: every contender measured in the same rounds, interleaved.

The machine is shared and its memory bandwidth drifts (a freshly allocated array
is slow for the first seconds while the kernel backs it with huge pages), so a
ratio is only meaningful between timings taken at the same moment. ``compare``
runs each callable once per round, in turn, and reports medians over rounds.
"""

import time

import numpy as np

__all__ = ["compare", "settle"]


def compare(contenders, rounds=30, repeat=3, warmup=1, settle_seconds=0.25):
    """Median seconds per call of each callable, timed round-robin.

    Each round runs every contender untimed for ``settle_seconds`` and then
    times ``repeat`` calls in a row: what one contender leaves behind must not
    be charged to the next one, and a fit runs its steps back to back too.
    Measured here: OpenBLAS worker threads keep spinning for about 0.1 s after
    a multi-threaded call and, on 2 cores, halve the speed of a threaded step
    that follows; 0.05 s of settling was not enough, 0.25 s was.

    Parameters
    ----------
    contenders : dict of name -> callable
    rounds : int
        Rounds; each times every contender ``repeat`` times in a row.
    repeat : int
        Calls per timing (the mean of a round's calls is one sample).
    warmup : int
        Untimed rounds first.

    Returns
    -------
    dict of name -> float, median seconds per call
    """
    samples = {name: [] for name in contenders}
    for round_ in range(warmup + rounds):
        for name, function in contenders.items():
            settle_until = time.perf_counter() + settle_seconds
            function()
            while time.perf_counter() < settle_until:
                function()
            start = time.perf_counter()
            for _ in range(repeat):
                function()
            elapsed = (time.perf_counter() - start) / repeat
            if round_ >= warmup:
                samples[name].append(elapsed)
    return {name: float(np.median(values)) for name, values in samples.items()}


def settle(function, tolerance=0.15, patience=3, budget=8.0):
    """Call ``function`` until its time is steady (memory warmed up); return it.

    Stops when ``patience`` successive medians of 5 calls agree within
    ``tolerance``, or after ``budget`` seconds.
    """
    deadline = time.perf_counter() + budget
    history = []
    while time.perf_counter() < deadline:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        history.append(float(np.median(times)))
        recent = history[-patience:]
        if len(recent) == patience and max(recent) <= (1 + tolerance) * min(recent):
            break
    return history[-1]
