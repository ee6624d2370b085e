"""Bad input gets a clear error naming the problem; nothing silently wrong."""

import numpy as np
import pytest

from sklearn_relu import ReLURegressor, make_relu_regression


@pytest.fixture(scope="module")
def data():
    return make_relu_regression(n_samples=60, n_features=4, random_state=0)


def with_value(array, index, value):
    array = array.copy()
    array[index] = value
    return array


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_X_or_y(data, value):
    X, y = data
    with pytest.raises(ValueError, match="NaN|infinity"):
        ReLURegressor().fit(with_value(X, (3, 1), value), y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        ReLURegressor().fit(X, with_value(y, 5, value))
    est = ReLURegressor(max_iter=1, tol=None).fit(X, y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        est.predict(with_value(X, (0, 0), value))


def test_non_finite_sample_weight(data):
    X, y = data
    with pytest.raises(ValueError, match="NaN|infinity"):
        ReLURegressor().fit(X, y, sample_weight=with_value(np.ones(60), 2, np.nan))


@pytest.mark.parametrize(
    "weights, match",
    [
        (-np.ones(60), "Negative values in data passed to .*sample_weight"),
        (np.zeros(60), "non-zero|all zeros"),
        (np.ones(59), "sample_weight.shape"),
    ],
)
def test_bad_sample_weight(data, weights, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        ReLURegressor().fit(X, y, sample_weight=weights)


def test_empty_data():
    with pytest.raises(ValueError, match="0 sample"):
        ReLURegressor().fit(np.empty((0, 3)), np.empty(0))
    with pytest.raises(ValueError, match="0 feature"):
        ReLURegressor().fit(np.empty((5, 0)), np.ones(5))


def test_one_dimensional_X(data):
    X, y = data
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        ReLURegressor().fit(X[:, 0], y)


def test_mismatched_lengths(data):
    X, y = data
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        ReLURegressor().fit(X, y[:-1])


def test_different_number_of_features_at_predict(data):
    X, y = data
    est = ReLURegressor(max_iter=1, tol=None).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but ReLURegressor is expecting 4"):
        est.predict(X[:, :3])


def test_strings(data):
    X, y = data
    with pytest.raises(ValueError, match="could not convert string to float"):
        ReLURegressor().fit(X.astype(str).astype(object) + "a", y)
    with pytest.raises(ValueError, match="Unknown label type|could not convert"):
        ReLURegressor().fit(X, np.array(["a"] * 60, dtype=object))


def test_predict_before_fit(data):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ReLURegressor().predict(data[0])


def test_two_dimensional_y_is_raveled_with_a_warning(data):
    from sklearn.exceptions import DataConversionWarning

    X, y = data
    with pytest.warns(DataConversionWarning):
        ReLURegressor(max_iter=1, tol=None).fit(X, y[:, None])


@pytest.mark.parametrize(
    "params, match",
    [
        # Every solver's range starts at 2; the table says so before the solver.
        ({"bits": 1}, r"bits must be an integer in \[2, 32\]"),
        ({"bits": 17}, r"bits must be an integer in \[2, 16\]"),
        ({"solver": "qsgd", "bits": 1}, r"bits must be an integer in \[2, 32\]"),
        ({"solver": "qsgd", "bits": 17}, r"bits must be an integer in \[2, 16\]"),
        ({"bits": 8.5}, r"bits must be an integer"),
        ({"bucket_size": 0}, "bucket_size must be None or a positive integer"),
        ({"batch_size": 0}, "batch_size must be 'auto' or an integer >= 1"),
        ({"batch_size": "big"}, "batch_size must be 'auto' or an integer >= 1"),
        ({"learning_rate": -1}, "learning_rate must be 'auto' or a positive finite float"),
        ({"learning_rate": 0}, "learning_rate must be 'auto' or a positive finite float"),
        ({"learning_rate": np.inf}, "learning_rate must be 'auto' or a positive finite float"),
        ({"learning_rate": "optimal"}, "learning_rate must be 'auto'"),
        ({"solver": "adam"}, "solver must be one of \\[.*'sgd'.*\\] or a Compressor instance, got 'adam'"),
        ({"max_iter": 0}, "max_iter must be an integer >= 1"),
        ({"tol": -0.1}, r"tol must be None or a float in \[0, 1\)"),
        ({"tol": 1.5}, r"tol must be None or a float in \[0, 1\)"),
        ({"n_iter_no_change": 0}, "n_iter_no_change must be an integer >= 1"),
        ({"n_ensemble": 0}, "n_ensemble must be an integer >= 1"),
        ({"n_workers": 0}, "n_workers must be None or an integer >= 1"),
        ({"n_workers": 2.0}, "n_workers must be None or an integer >= 1"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be a float in \(0, 1\)"),
        ({"validation_fraction": 0}, r"validation_fraction must be a float in \(0, 1\)"),
        ({"init": "pca"}, "init must be one of"),
        ({"init": np.ones(3)}, r"init array has shape \(3,\), expected \(4,\)"),
        ({"init": np.ones((4, 1))}, r"init array has shape \(4, 1\), expected \(4,\)"),
        ({"init": [1.0, np.nan, 0, 0]}, "init array contains NaN or infinity"),
        ({"backend": "spark"}, "backend must be one of"),
    ],
)
def test_bad_parameters(data, params, match):
    X, y = data
    est = ReLURegressor(**params)
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)
    assert not hasattr(est, "coef_")


def test_n_workers_larger_than_samples(data):
    X, y = data
    with pytest.raises(ValueError, match="n_workers=61 is larger than the number of training samples \\(60\\)"):
        ReLURegressor(n_workers=61).fit(X, y)


def test_batch_size_smaller_than_workers(data):
    X, y = data
    with pytest.raises(ValueError, match="batch_size=2 is smaller than n_workers=3"):
        ReLURegressor(n_workers=3, batch_size=2).fit(X, y)


def test_too_few_samples_for_early_stopping():
    X, y = make_relu_regression(n_samples=1, n_features=3, random_state=0)
    with pytest.raises(ValueError, match="train set will be empty|too few samples"):
        ReLURegressor(early_stopping=True, validation_fraction=0.1).fit(X, y)


def test_parameters_are_only_stored_in_init():
    # Validation happens in fit, as scikit-learn requires.
    est = ReLURegressor(bits=99, solver="adam")
    assert est.get_params()["bits"] == 99


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples must be a positive integer"),
        ({"n_features": 2.5}, "n_features must be a positive integer"),
        ({"noise": -1.0}, "noise must be a non-negative number"),
        ({"noise": np.nan}, "noise must be a non-negative number"),
    ],
)
def test_make_relu_regression_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_relu_regression(**kwargs)


@pytest.mark.parametrize("name", ["fit_intercept", "early_stopping", "warm_start"])
def test_boolean_parameters_must_be_booleans(name):
    X, y = make_relu_regression(n_samples=50, n_features=3, random_state=0)
    with pytest.raises(ValueError, match=f"{name} must be True or False"):
        ReLURegressor(**{name: "no"}).fit(X, y)


def test_encoding_is_checked_whatever_the_solver():
    X, y = make_relu_regression(n_samples=50, n_features=3, random_state=0)
    with pytest.raises(ValueError, match="encoding"):
        ReLURegressor(solver="sgd", encoding="zip").fit(X, y)


@pytest.mark.parametrize("seed", range(5))
def test_an_early_stopping_split_without_weight_on_one_side_is_named(seed):
    # One row of 50 carries all the weight: one side of the split has none,
    # and its loss or R^2 divided by zero (ZeroDivisionError).
    X, y = make_relu_regression(n_samples=50, n_features=3, random_state=0)
    weights = np.zeros(50)
    weights[0] = 1.0
    est = ReLURegressor(early_stopping=True, validation_fraction=0.5, random_state=seed,
                        max_iter=3)
    with pytest.raises(ValueError, match=r"left the (training|validation) rows with a "
                       r"total sample_weight of 0"):
        est.fit(X, y, weights)
