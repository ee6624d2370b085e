"""The parameter table (sklearn_relu/_params.py), the exception types, and the
size limits that keep the code changeable."""

import ast
import inspect
import pickle
from pathlib import Path

import numpy as np
import pytest

from sklearn_relu import DivergenceError, ReLURegressor, make_relu_regression
from sklearn_relu._params import PARAMETERS, parameter_help, validated

PACKAGE = Path(__file__).resolve().parents[1] / "sklearn_relu"


@pytest.fixture(scope="module")
def data():
    return make_relu_regression(n_samples=300, n_features=5, random_state=0)


def test_the_table_is_the_signature():
    signature = inspect.signature(ReLURegressor)
    assert [p.name for p in PARAMETERS] == list(signature.parameters)
    for parameter in PARAMETERS:
        assert parameter.default == signature.parameters[parameter.name].default
        # Every entry's help comes from the docstring: the docstring has one.
        assert parameter_help(parameter.name)


def test_the_defaults_pass_the_table():
    defaults = validated(ReLURegressor().get_params(deep=False))
    assert defaults.batch_size == "auto" and defaults.tol == 1e-4


@pytest.mark.parametrize(
    "params, match",
    [
        # Parameters the solver does not read are checked all the same.
        ({"momentum": 2}, r"momentum must be a float in \[0, 1\), got 2"),
        ({"k": 0}, r"k must be an integer >= 1 or a float in \(0, 1\], got 0"),
        ({"verbose": "x"}, "verbose must be an integer >= 0, got 'x'"),
        ({"encoding": "zip"}, r"encoding must be one of \['packed', 'elias'\]"),
        ({"n_byzantine": -1}, "n_byzantine must be an integer >= 0"),
        ({"checkpoint": ""}, "checkpoint must be None or a file path, got ''"),
        ({"checkpoint_every": 0}, "checkpoint_every must be an integer >= 1"),
        ({"callback": 3}, "callback must be None or a callable, got 3"),
        ({"shards": "dirichlet"}, "shards must be None or a splitter"),
        ({"random_state": -1}, r"random_state must be an int in \[0, 2\*\*32 - 1\]"),
        ({"learning_rate": True}, "learning_rate must be 'auto' or a positive finite float"),
        ({"max_iter": np.float64(3)}, "max_iter must be an integer >= 1"),
    ],
)
def test_every_parameter_is_checked_whatever_the_solver(data, params, match):
    est = ReLURegressor(solver="sgd", **params)
    with pytest.raises(ValueError, match=match):
        est.fit(*data)
    assert not hasattr(est, "coef_")


def test_numpy_scalars_fit_as_the_python_numbers_they_hold(data):
    # np.int16(200) * n_samples overflowed int16 and the fit diverged;
    # np.uint8(2) raised OverflowError.
    X, y = data
    plain = ReLURegressor(batch_size=200, n_workers=2, max_iter=3, tol=None,
                          random_state=0).fit(X, y)
    scalars = ReLURegressor(batch_size=np.int16(200), n_workers=np.uint8(2),
                            max_iter=np.int64(3), tol=None,
                            random_state=np.int32(0)).fit(X, y)
    np.testing.assert_array_equal(plain.coef_, scalars.coef_)
    assert scalars.n_workers_ == 2 and type(scalars.t_) is int


def test_a_huge_thread_count_in_the_environment_is_capped(monkeypatch):
    from sklearn_relu import _parallel

    monkeypatch.setenv("SKLEARN_RELU_THREADS", "99999999999999999999")
    with pytest.warns(UserWarning, match="is more than 256 threads; using 256"):
        assert _parallel._default_threads() == 256


def test_divergence_is_a_type_that_keeps_its_reason_through_pickling(data):
    X, y = data
    with pytest.raises(DivergenceError, match="SGD diverged: .*learning_rate") as raised:
        ReLURegressor(learning_rate=1e3, random_state=0).fit(X, y * 1e3)
    error = raised.value
    assert isinstance(error, FloatingPointError)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.reason, copy.advice, str(copy)) == (
        DivergenceError, error.reason, error.advice, str(error)
    )


def test_auto_step_divergence_advises_a_smaller_step():
    error = DivergenceError("x").with_advice(DivergenceError.AUTO_ADVICE)
    assert str(error) == f"SGD diverged: x. {DivergenceError.AUTO_ADVICE}"


# -- sizes a newcomer can read ---------------------------------------------------------
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 800


def _modules():
    return sorted(
        path for path in PACKAGE.rglob("*")
        if path.suffix in (".py", ".c", ".h") and "__pycache__" not in path.parts
    )


def test_no_module_is_longer_than_800_lines():
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in _modules()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long


def test_no_function_is_longer_than_80_lines():
    long = {}
    for path in _modules():
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert not long
