"""
The QSGD quantizer: bits, error and message size
================================================

Quantize one Gaussian vector at several bit widths and compare the measured
squared error with QSGD's bound ``min(d/s^2, sqrt(d)/s) ||v||^2``, where
``s = 2**(bits-1) - 1`` levels; print the size of each message on the wire.
"""

import matplotlib.pyplot as plt
import numpy as np

from sklearn_relu.compression import QSGD, Identity

d = 1000
rng = np.random.default_rng(0)
v = rng.standard_normal(d)
norm2 = v @ v

bit_widths = [2, 3, 4, 6, 8, 12, 16]
measured, bound = [], []
for bits in bit_widths:
    q = QSGD(bits=bits)
    s = 2 ** (bits - 1) - 1
    errors = [np.sum((q.decompress(q.compress(v, rng)) - v) ** 2) for _ in range(50)]
    measured.append(np.mean(errors) / norm2)
    bound.append(min(d / s**2, np.sqrt(d) / s))
    print(f"{bits:>2} bits (s = {s:>5}): message {len(q.compress(v, rng)):>5} bytes, "
          f"relative variance {measured[-1]:.2e} (bound {bound[-1]:.2e})")
print(f"float64 (Identity): message {len(Identity().compress(v, rng))} bytes")

fig, ax = plt.subplots(figsize=(6, 4))
ax.semilogy(bit_widths, measured, "o-", label="measured E||Q(v) - v||^2 / ||v||^2")
ax.semilogy(bit_widths, bound, "k--", label="bound min(d/s^2, sqrt(d)/s)")
ax.set(xlabel="bits per coordinate", ylabel="relative variance", title=f"d = {d}")
ax.legend()
fig.tight_layout()
plt.show()
