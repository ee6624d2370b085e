"""Test-suite settings shared by every test module.

Hypothesis draws the same examples on every run ("deterministic", the
default), so that CI on a fresh machine passes or fails for the code, not for
the draw; a bug it has found stays as an explicit ``@example``. To search
for new counterexamples, run with ``--hypothesis-profile=explore``.
"""

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=500)
settings.load_profile("deterministic")
