"""Test-suite settings shared by every test module.

Hypothesis draws the same examples on every run ("deterministic", the
default), so that CI on a fresh machine passes or fails for the code, not for
the draw; a bug it has found stays as an explicit ``@example``. To search
for new counterexamples, run with ``--hypothesis-profile=explore``.
"""

import pytest
from hypothesis import settings

from sklearn_relu import _steps

settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=500)
settings.load_profile("deterministic")


@pytest.fixture
def fused_calls(monkeypatch):
    """Count the compiled loop's calls (each runs many steps)."""
    calls = []
    run_steps = _steps.run_steps

    def counting(backend, params, update, n_steps):
        calls.append(n_steps)
        return run_steps(backend, params, update, n_steps)

    monkeypatch.setattr(_steps, "run_steps", counting)
    return calls
