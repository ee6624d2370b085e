"""Elias-coded QSGD messages against packed ones: decode and encode time, memory.

Run::

    .venv/bin/python -m benchmarks.elias_codec            # d = 1e6, widths 2..16
                                                          # -> results/elias_codec.md
    .venv/bin/python -m benchmarks --only elias           # the same rows in results.md

For every width ``bits`` in [2, 16], one float64 vector of ``d`` standard
normal values is compressed by ``QSGD(bits)`` (packed: ``bits`` bits a
coordinate) and by ``QSGD(bits, encoding="elias")`` (QSGD's sparse omega code),
with QSGD's default bucket (the whole vector) and with buckets of 128 (QSGD's
own setting for 2 bits, where far more levels are nonzero). Then:

- decode: ``decompress`` of each message (parsing, decoding the levels,
  checking them, scaling by the norms), timed side by side by
  ``_timing.compare`` (interleaved rounds, medians). Target: the Elias decode
  at most 5x the packed decode at every width.
- encode: ``compress`` (quantization included, the same for both), the same
  way. Target: at most 5x too.
- memory: peak bytes allocated (tracemalloc) during one decode. Target: the
  Elias decode at most 1.5x the packed decode's peak.

The decoder used is the one the package uses (``ELIAS_KERNEL``: the compiled
loop of ``_kernels.c`` when it is built, else the NumPy path).
"""

import argparse
import datetime
import os
import tracemalloc
from pathlib import Path

import numpy as np

from sklearn_relu.compression import QSGD
from sklearn_relu.compression._elias import ELIAS_KERNEL

from ._timing import compare

TIME_TARGET = 5.0
MEMORY_TARGET = 1.5


def _peak_bytes(function):
    tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - before


def measure(d=10**6, widths=range(2, 17), buckets=(None, 128), rounds=7, progress=False):
    """Rows ``(name, target, measured, passed)``, one per width, bucket and figure;
    with ``progress``, each decode row is printed as soon as it is measured."""
    vector = np.random.default_rng(0).standard_normal(d)
    rows = []
    for bucket in buckets:
        for bits in widths:
            packed = QSGD(bits, bucket_size=bucket)
            elias = QSGD(bits, bucket_size=bucket, encoding="elias")
            messages = {
                "packed": packed.compress(vector, random_state=1),
                "elias": elias.compress(vector, random_state=1),
            }
            np.testing.assert_array_equal(  # same levels, same rounding
                packed.decompress(messages["packed"]),
                elias.decompress(messages["elias"]),
            )
            times = compare(
                {
                    "decode packed": lambda: packed.decompress(messages["packed"]),
                    "decode elias": lambda: elias.decompress(messages["elias"]),
                    "encode packed": lambda: packed.compress(vector, random_state=1),
                    "encode elias": lambda: elias.compress(vector, random_state=1),
                },
                rounds=rounds, repeat=2, settle_seconds=0.02,
            )
            peaks = {
                name: _peak_bytes(lambda c=codec, m=message: c.decompress(m))
                for (name, message), codec in zip(messages.items(), (packed, elias))
            }
            where = f"bits={bits}, bucket={bucket or 'd'}, d={d:.0e}"
            size = f"{len(messages['elias'])} vs {len(messages['packed'])} bytes"
            for what in ("decode", "encode"):
                ratio = times[f"{what} elias"] / times[f"{what} packed"]
                rows.append((
                    f"Elias {what} / packed {what}, {where}",
                    f"<= {TIME_TARGET:g}",
                    f"{ratio:.2f} ({times[f'{what} elias'] * 1e3:.2f} ms / "
                    f"{times[f'{what} packed'] * 1e3:.2f} ms; {size})",
                    ratio <= TIME_TARGET,
                ))
            ratio = peaks["elias"] / peaks["packed"]
            rows.append((
                f"Elias decode peak memory / packed decode's, {where}",
                f"<= {MEMORY_TARGET:g}",
                f"{ratio:.2f} ({peaks['elias'] / 2**20:.1f} MiB / "
                f"{peaks['packed'] / 2**20:.1f} MiB)",
                ratio <= MEMORY_TARGET,
            ))
            name, target, measured, passed = rows[-3]
            if progress:
                print(f"[{'PASS' if passed else 'FAIL'}] {name}: {measured} "
                      f"(target {target})", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.elias_codec",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=float, default=1e6, help="vector length")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                             / "elias_codec.md"),
                        help="markdown table of the results (default %(default)s)")
    args = parser.parse_args(argv)
    print(f"Elias path in use: {ELIAS_KERNEL!r}", flush=True)
    rows = measure(int(args.d), rounds=args.rounds, progress=True)
    print()
    for name, target, measured, passed in rows:
        print(f"[{'PASS' if passed else 'FAIL'}] {name}: {measured} (target {target})")
    failed = sum(not row[3] for row in rows)
    print(f"{len(rows) - failed} of {len(rows)} PASS")
    now = datetime.datetime.now(datetime.timezone.utc)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Elias-coded QSGD against packed: decode, encode, memory", "",
        f"- date: {now:%Y-%m-%d %H:%M} UTC; command: `python -m benchmarks.elias_codec"
        f" --d {args.d:g} --rounds {args.rounds}`; Elias path: {ELIAS_KERNEL!r}; "
        f"{os.cpu_count()} cores, load average at the end {load:.2f}",
        "- every ratio is between timings interleaved in the same run (medians over "
        "rounds); the machine may be shared, so expect noise.",
        f"- {len(rows) - failed} of {len(rows)} PASS", "",
        "| figure | target | measured | pass |", "|---|---|---|---|",
    ] + [f"| {name} | {target} | {measured} | {'PASS' if passed else 'FAIL'} |"
         for name, target, measured, passed in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
