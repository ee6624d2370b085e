"""A checkpoint of a fit under attack resumes bit-identically when the attack
draws random numbers: a Byzantine worker's noise (``"gaussian"``, a callable
using its rng) and an omniscient attack's streams, seeded by its rounds."""

import pytest
from test_checkpoint import assert_same_fit, interrupt_then_resume, interrupting

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._checkpoint import _read, _write
from sklearn_relu.attacks import OmniscientAttack


class NoisyMean(OmniscientAttack):
    """The honest mean plus noise from the attack's stream: resumes only if the
    stream's seed (the fit's, and the round) does."""

    def craft(self, own, honest, aggregate, rng, n_byzantine):
        return honest.mean(axis=0) + rng.normal(0.0, 1.0, size=own.shape[0])


def noisy_worker(vector, rng):
    return vector + rng.normal(0.0, 10.0, size=vector.shape[0])


@pytest.mark.parametrize("attack", ["gaussian", noisy_worker, NoisyMean()],
                         ids=["gaussian", "callable", "omniscient"])
def test_a_fit_under_a_random_attack_resumes_bit_identically(attack, tmp_path):
    X, y = make_relu_regression(n_samples=600, n_features=8, noise=0.1, random_state=0)
    common = dict(batch_size=60, n_workers=5, random_state=0, max_iter=12, tol=None,
                  aggregation="geometric_median", n_byzantine=1, attack=attack)
    resumed, left = interrupt_then_resume(tmp_path / "fit.ckpt", X, y, "sgd", 75, 2,
                                          **common)
    reference = ReLURegressor(solver=interrupting("sgd", None), **common).fit(X, y)
    assert left["attack_rngs"].shape == (5, 6)
    assert_same_fit(resumed, reference)


def test_crafted_attack_rounds_are_refused(tmp_path):
    X, y = make_relu_regression(n_samples=600, n_features=8, noise=0.1, random_state=0)
    common = dict(batch_size=60, n_workers=5, random_state=0, max_iter=12, tol=None,
                  aggregation="geometric_median", n_byzantine=1, attack="alie")
    path = tmp_path / "fit.ckpt"
    interrupt_then_resume(path, X, y, "sgd", 75, 2, **common)
    first = ReLURegressor(solver=interrupting("sgd", 75), checkpoint=path, **common)
    with pytest.raises(RuntimeError, match="injected"):
        first.fit(X, y)
    content = _read(path)
    assert content["attack_rounds"][1] > 0
    _write(path, {**content, "attack_rounds": [-1, 3]})
    with pytest.raises(ValueError, match="field 'attack_rounds' entry 0 is -1"):
        ReLURegressor(solver=interrupting("sgd", None), checkpoint=path, **common).fit(X, y)
