"""Benchmark suite for sklearn_relu: ``python -m benchmarks`` runs all of it.

See ``benchmarks/run.py``; results land in ``benchmarks/results/``.
"""
