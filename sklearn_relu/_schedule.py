"""Step-size schedules: a constant step, and the halving step sign methods need.

A sign step moves every coordinate by the same amount whatever the gradient's
size, so at a constant step a sign method stalls at a distance of about that
step from the optimum, even on a noiseless problem. The sign schedule therefore
shrinks the step geometrically: ``learning_rate * 2 ** (-t / half_life)`` at
step ``t``, with ``half_life = SIGN_HALF_LIFE`` steps. Its ``learning_rate="auto"``
moves the model as far at the first step as an exact gradient step at the
``"auto"`` step size would: ``mu * ||grad L(w_0)|| / sqrt(p)`` over ``p``
parameters.
"""

import math

__all__ = ["ConstantStep", "HalvingStep", "SIGN_HALF_LIFE", "initial_sign_step"]

#: Steps over which the sign schedule halves its step.
SIGN_HALF_LIFE = 100


class ConstantStep(float):
    """The step size ``learning_rate`` at every step (a float)."""

    def at(self, t):
        return float(self)


class HalvingStep(float):
    """``learning_rate * 2 ** (-(first + t) / half_life)`` at step ``t`` of a call;
    ``first`` counts the steps of earlier calls that this one continues."""

    def __new__(cls, learning_rate, half_life=SIGN_HALF_LIFE, first=0):
        self = super().__new__(cls, learning_rate)
        self.half_life, self.first = half_life, first
        return self

    def at(self, t):
        return float(self) * 2.0 ** (-(self.first + t) / self.half_life)


def initial_sign_step(learning_rate, gradient_norm, n_params):
    """The first sign step: as far as an exact gradient step of ``learning_rate``."""
    return learning_rate * gradient_norm / math.sqrt(max(n_params, 1))
