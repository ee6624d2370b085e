"""Only the optional C kernel; everything else is in pyproject.toml.

The extension speeds up the mini-batch gradient (sklearn_relu/_kernels.c). It is
``optional``: where it cannot be compiled (no C compiler, no Python headers) the
installation still succeeds and the package uses its NumPy path;
``sklearn_relu._gradient.KERNEL`` says which one is active.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sklearn_relu._kernels",
            sources=["sklearn_relu/_kernels.c"],
            # The sections _kernels.c includes: a change to one rebuilds it.
            depends=[
                f"sklearn_relu/_kernels_{section}.h"
                for section in ("gradient", "numpy", "sparse", "helper", "steps", "elias")
            ],
            # -O3 vectorizes the loops; -ffp-contract=fast lets the AVX2 variant
            # use fused multiply-adds. That variant is chosen at run time
            # (target_clones in the source), so no -march flag here.
            extra_compile_args=["-O3", "-funroll-loops", "-ffp-contract=fast"],
            optional=True,
        ),
        # MPIBackend(wait="sleep"): a barrier whose waiters sleep in the kernel
        # (Linux futex). Optional too: elsewhere the backend yields instead.
        Extension(
            "sklearn_relu.backends._futex",
            sources=["sklearn_relu/backends/_futex.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ],
)
