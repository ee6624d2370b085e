"""ReLURegressor inside scikit-learn's machinery: Pipeline, GridSearchCV with
joblib workers, cross_val_score, clone, pickle."""

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_relu import ReLURegressor, make_relu_regression


@pytest.fixture(scope="module")
def planted():
    return make_relu_regression(n_samples=400, n_features=8, coef=True, random_state=0)


def test_pipeline_with_scaler_fixes_badly_scaled_features():
    X, y = make_relu_regression(n_samples=800, n_features=6, random_state=4)
    X = X * np.array([1e-2, 1, 1, 10, 100, 1]) + 5
    pipe = make_pipeline(StandardScaler(), ReLURegressor(random_state=0)).fit(X, y)
    assert pipe.score(X, y) > 1 - 1e-6
    assert pipe[-1].n_features_in_ == 6


def test_grid_search_with_two_jobs(planted):
    X, y, _ = planted
    search = GridSearchCV(
        ReLURegressor(max_iter=20, tol=None, random_state=0),
        {"solver": ["sgd", "qsgd"], "bits": [2, 8]},
        cv=KFold(3, shuffle=True, random_state=0),
        n_jobs=2,
    ).fit(X, y)
    assert len(search.cv_results_["mean_test_score"]) == 4
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_score_ > 0.99
    # The refitted best estimator is a fitted ReLURegressor.
    assert search.best_estimator_.coef_.shape == (8,)
    # The same search in one process gives the same scores: the jobs ran the
    # real thing, seeded by random_state.
    serial = GridSearchCV(
        ReLURegressor(max_iter=20, tol=None, random_state=0),
        {"solver": ["sgd", "qsgd"], "bits": [2, 8]},
        cv=KFold(3, shuffle=True, random_state=0),
        n_jobs=1,
    ).fit(X, y)
    np.testing.assert_allclose(
        serial.cv_results_["mean_test_score"], search.cv_results_["mean_test_score"],
        rtol=1e-9,
    )


def test_cross_val_score(planted):
    X, y, _ = planted
    est = ReLURegressor(solver="qsgd", max_iter=40, tol=None, random_state=0)
    scores = cross_val_score(est, X, y, cv=3)
    assert scores.shape == (3,)
    assert np.all(scores > 0.999)


def test_clone_is_unfitted_with_the_same_parameters(planted):
    X, y, _ = planted
    est = ReLURegressor(solver="qsgd", bits=4, bucket_size=16, random_state=3).fit(X, y)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "coef_")
    np.testing.assert_array_equal(copy.fit(X, y).coef_, est.coef_)


@pytest.mark.parametrize("solver", ["sgd", "qsgd"])
def test_pickle_round_trip_predicts_the_same(planted, solver, tmp_path):
    X, y, _ = planted
    est = ReLURegressor(solver=solver, random_state=0).fit(X, y)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    assert loaded.comm_record_ == est.comm_record_
    joblib.dump(est, tmp_path / "model.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").predict(X), est.predict(X))
    # A loaded model keeps training.
    loaded.partial_fit(X, y)
    assert loaded.n_iter_ == est.n_iter_ + 1


def test_pickle_of_unfitted_estimator():
    est = pickle.loads(pickle.dumps(ReLURegressor(bits=4)))
    assert est.get_params()["bits"] == 4


def test_feature_names_are_kept():
    pd = pytest.importorskip("pandas")
    X, y = make_relu_regression(n_samples=200, n_features=3, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    est = ReLURegressor(max_iter=3, tol=None, random_state=0).fit(frame, y)
    assert est.feature_names_in_.tolist() == ["a", "b", "c"]
    with pytest.warns(UserWarning, match="feature names"):
        est.predict(X)
