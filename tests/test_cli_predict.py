"""``python -m sklearn_relu predict``, model files (skops, joblib), and what the
CLI keeps from a CSV: column names, the target column, a held-out score."""

import json
import re

import joblib
import numpy as np
import pytest
import skops.io
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_relu import ReLURegressor, _cli, make_relu_regression
from sklearn_relu._cli import load_data, main
from sklearn_relu._persist import load_model, model_format, save_model

pd = pytest.importorskip("pandas")

FIT = ["--random-state", "0", "--max-iter", "5", "--tol", "none", "--backend",
       "inprocess"]


@pytest.fixture
def planted():
    X, y = make_relu_regression(n_samples=120, n_features=3, noise=0.05, random_state=0)
    return X, y


def _csv(path, X, y, names=("a", "b", "c"), target="y", target_at=None):
    columns = list(names)
    table = [X[:, i] for i in range(X.shape[1])]
    at = len(columns) if target_at is None else target_at
    columns.insert(at, target)
    table.insert(at, y)
    np.savetxt(path, np.column_stack(table), delimiter=",", fmt="%.17g",
               header=",".join(columns), comments="")
    return str(path)


def _write(tmp_path, X, y, kind):
    if kind == "npz":
        np.savez(tmp_path / "d.npz", X=X, y=y)
        return [str(tmp_path / "d.npz")], str(tmp_path / "d.npz")
    if kind == "npy":
        np.save(tmp_path / "X.npy", X)
        np.save(tmp_path / "y.npy", y)
        return ([str(tmp_path / "X.npy"), "--target", str(tmp_path / "y.npy")],
                str(tmp_path / "X.npy"))
    path = _csv(tmp_path / "d.csv", X, y)
    return [path], path


def _predictions(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "prediction"
    return np.array([float(v) for v in lines[1:]])


@pytest.mark.parametrize("model_suffix", [".skops", ".joblib"])
@pytest.mark.parametrize("kind", ["npz", "npy", "csv"])
def test_predict_round_trips_on_every_data_format(tmp_path, planted, kind, model_suffix):
    X, y = planted
    fit_args, data = _write(tmp_path, X, y, kind)
    model = tmp_path / f"m{model_suffix}"
    assert main(["fit", *fit_args, *FIT, "--out", str(model)]) == 0
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(model), data, "--out", str(out)]) == 0
    direct = ReLURegressor(random_state=0, max_iter=5, tol=None).fit(X, y)
    assert_allclose(_predictions(out), direct.predict(X), rtol=1e-15, atol=0)
    # skops by default, joblib (a pickle) only when asked for by the suffix.
    if model_suffix == ".skops":
        assert skops.io.get_untrusted_types(file=model)
    else:
        assert isinstance(joblib.load(model), ReLURegressor)


class Payload:
    """A type no one has declared safe."""


def test_skops_load_refuses_an_untrusted_type(tmp_path, planted):
    X, y = planted
    est = ReLURegressor(max_iter=2, tol=None, random_state=0).fit(X, y)
    est.payload_ = Payload()
    path = tmp_path / "tampered.skops"
    save_model(est, path)
    with pytest.raises(ValueError, match=r"not trusted: .*test_cli_predict\.Payload"):
        load_model(path)
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "p.csv"
    with pytest.raises(ValueError, match=r"not trusted: .*Payload.*--trust TYPE"):
        main(["predict", str(path), str(tmp_path / "X.npy"), "--out", str(out)])
    assert not out.exists()
    # Named by the user, the type is trusted.
    trusted = skops.io.get_untrusted_types(file=path)
    loaded = load_model(path, trusted=[t for t in trusted if "Payload" in t])
    assert_array_equal(loaded.coef_, est.coef_)


def test_model_format_follows_the_suffix():
    assert model_format("m.skops") == "skops" and model_format("m.out") == "skops"
    assert model_format("m.joblib") == "joblib" and model_format("m.PKL") == "joblib"


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="model file .*nope.skops.* does not exist"):
        load_model(tmp_path / "nope.skops")


def test_csv_names_reach_feature_names_in_and_predict_picks_columns_by_name(
    tmp_path, planted
):
    X, y = planted
    # The target in the middle, named: --target-column NAME.
    data = _csv(tmp_path / "d.csv", X, y, target="price", target_at=1)
    model = tmp_path / "m.skops"
    main(["fit", data, "--target-column", "price", *FIT, "--out", str(model)])
    est = load_model(model)
    assert list(est.feature_names_in_) == ["a", "b", "c"]
    direct = ReLURegressor(random_state=0, max_iter=5, tol=None).fit(X, y)
    assert_array_equal(est.coef_, direct.coef_)
    # Prediction data with the columns in another order and no target.
    shuffled = tmp_path / "new.csv"
    pd.DataFrame(X[:, [2, 0, 1]], columns=["c", "a", "b"]).to_csv(shuffled, index=False)
    out = tmp_path / "p.csv"
    main(["predict", str(model), str(shuffled), "--out", str(out)])
    assert_allclose(_predictions(out), direct.predict(X), rtol=1e-15, atol=0)
    pd.DataFrame(X[:, :2], columns=["a", "b"]).to_csv(shuffled, index=False)
    with pytest.raises(ValueError, match=r"lacks the columns .*\['c'\]"):
        main(["predict", str(model), str(shuffled), "--out", str(out)])


@pytest.mark.parametrize("standardize", [False, True])
def test_without_pandas_the_model_still_keeps_the_csv_names(
    tmp_path, planted, monkeypatch, capsys, standardize
):
    # A fit without pandas saw an array; predicting from a file with the
    # columns in another order must still pick them by name, not position.
    monkeypatch.setattr(_cli, "_with_names", lambda X, names: X)  # as without pandas
    X, y = planted
    data = _csv(tmp_path / "d.csv", X, y, target="price", target_at=1)
    model = tmp_path / "m.skops"
    flags = ["--standardize"] if standardize else []
    main(["fit", data, "--target-column", "price", *FIT, *flags, "--out", str(model)])
    fitted = load_model(model)
    first = fitted.steps[0][1] if standardize else fitted
    assert list(first.feature_names_in_) == ["a", "b", "c"]
    out, shuffled_out = tmp_path / "p.csv", tmp_path / "q.csv"
    main(["predict", str(model), data, "--target-column", "price", "--out", str(out)])
    shuffled = _csv(tmp_path / "s.csv", X[:, [2, 0, 1]], y, names=("c", "a", "b"),
                    target="price", target_at=0)
    main(["predict", str(model), shuffled, "--target-column", "price",
          "--out", str(shuffled_out)])
    assert_array_equal(_predictions(shuffled_out), _predictions(out))
    assert "feature names" not in capsys.readouterr().err  # main() prints warnings


def test_target_column_by_index(tmp_path, planted):
    X, y = planted
    data = _csv(tmp_path / "d.csv", X, y, target_at=0)
    X_read, y_read, _ = load_data(data, target_column="0")
    assert_array_equal(y_read, y)
    assert list(X_read.columns) == ["a", "b", "c"]
    X_read, y_read, _ = load_data(data, target_column="-4")
    assert_array_equal(y_read, y)


@pytest.mark.parametrize(
    "content, column, message",
    [
        ("a,b,y\n1,2,3\n", "price", r"has no column named 'price'; it has \['a', 'b', 'y'\]"),
        ("1,2,3\n4,5,6\n", "price", "is a name, but .* has no header line"),
        ("1,2,3\n4,5,6\n", "3", "--target-column 3 is out of range for .*3 columns"),
        ("a,b,y\n1,2,3\n4,5\n6,7,8\n", None, r"d\.csv, line 3: 2 fields where the rows above have 3"),
        ("a,b,y\n1,2,3\n4,x,5\n", None, r"d\.csv, line 3: 'x' is not a number"),
        ("a,b\n1,2,3\n", None, "line 1: the header names 2 columns, the rows have 3"),
        ("a;b;y\n1;2;3\n", None, r"line 1: no comma; the rows seem separated by semicolons"),
        ("1\t2\t3\n4\t5\t6\n", None, r"line 1: no comma; the rows seem separated by tabs"),
        ("a,b,y\n1;2;3\n", None, r"line 2: '1;2;3' is not a number; the rows seem separated"),
        ("a,a,y\n1,2,3\n", None, r"line 1: the column names \['a'\] appear more than once"),
    ],
)
def test_csv_errors_say_which_line_or_column(tmp_path, content, column, message):
    (tmp_path / "d.csv").write_text(content)
    with pytest.raises(ValueError, match=message):
        load_data(tmp_path / "d.csv", target_column=column)


@pytest.mark.parametrize("content, shape", [
    ("a|b\n1.5\n2.5\n", (2, 1)),     # one column whose name holds a bar
    ("1.5\t\n2.5\t\n", (2, 1)),     # numbers with a trailing tab
    ("x;y,t\n1,2\n3,4\n", (2, 2)),  # a separator inside a comma-separated name
])
def test_csv_files_with_a_separator_in_one_column_still_read(tmp_path, content, shape):
    from sklearn_relu._cli import _load_csv

    (tmp_path / "d.csv").write_text(content)
    assert _load_csv(tmp_path / "d.csv")[1].shape == shape


def test_target_column_only_for_csv(tmp_path, planted):
    X, y = planted
    np.savez(tmp_path / "d.npz", X=X, y=y)
    with pytest.raises(ValueError, match="--target-column is only for .csv"):
        load_data(tmp_path / "d.npz", target_column="0")


def test_test_size_reports_training_and_held_out_r2(tmp_path, planted, capsys):
    X, y = planted
    fit_args, _ = _write(tmp_path, X, y, "npz")
    out = str(tmp_path / "m.skops")
    main(["fit", *fit_args, *FIT, "--test-size", "0.25", "--out", out, "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_samples"] == 90 and summary["n_test"] == 30
    assert -1 < summary["test_r2"] <= 1 and 0 < summary["training_r2"] <= 1
    main(["fit", *fit_args, *FIT, "--out", out])
    text = capsys.readouterr().out
    assert "training R^2" in text and "no held-out score: see --test-size" in text
    assert "% of float64" in text and "fewer than" not in text


@pytest.mark.parametrize("size", ["0", "1", "1.0", "1.5", "-0.2", "one"])
def test_test_size_must_be_a_share_or_a_count_of_two_or_more(
    tmp_path, planted, capsys, size
):
    X, y = planted
    fit_args, _ = _write(tmp_path, X, y, "npz")
    with pytest.raises(SystemExit):
        main(["fit", *fit_args, *FIT, "--test-size", size,
              "--out", str(tmp_path / "m.skops")])
    assert "--test-size" in capsys.readouterr().err
    assert not (tmp_path / "m.skops").exists()


@pytest.mark.parametrize("size", ["119", "120", "1000000000", "0.005", "0.99"])
def test_test_size_leaves_two_rows_on_each_side(tmp_path, planted, size):
    X, y = planted  # 120 rows: 0.005 holds out 1, 0.99 holds out 119
    fit_args, _ = _write(tmp_path, X, y, "npz")
    with pytest.raises(ValueError, match=f"--test-size {size} holds out .* of the 120 rows"):
        main(["fit", *fit_args, *FIT, "--test-size", size,
              "--out", str(tmp_path / "m.skops")])


def test_test_size_counts_rows_from_two(tmp_path, planted, capsys):
    X, y = planted
    fit_args, _ = _write(tmp_path, X, y, "npz")
    main(["fit", *fit_args, *FIT, "--test-size", "2", "--out",
          str(tmp_path / "m.skops"), "--json"])
    assert json.loads(capsys.readouterr().out)["n_test"] == 2


def test_standardize_fits_the_pipeline(tmp_path, planted):
    X, y = planted
    X = X * [1.0, 100.0, 0.01] + 5.0
    fit_args, data = _write(tmp_path, X, y, "npz")
    model = tmp_path / "m.skops"
    main(["fit", *fit_args, *FIT, "--standardize", "--out", str(model)])
    loaded = load_model(model)
    assert isinstance(loaded, Pipeline)
    direct = make_pipeline(
        StandardScaler(), ReLURegressor(random_state=0, max_iter=5, tol=None)
    ).fit(X, y)
    assert_array_equal(loaded.predict(X), direct.predict(X))
    out = tmp_path / "p.csv"
    main(["predict", str(model), data, "--out", str(out)])
    assert_array_equal(_predictions(out), direct.predict(X))


def test_verbose_fit_reports_steps_and_elapsed_time(tmp_path, planted, caplog):
    import logging

    X, y = planted
    fit_args, _ = _write(tmp_path, X, y, "npz")
    caplog.set_level(logging.INFO, logger="sklearn_relu")
    main(["fit", *fit_args, *FIT, "--verbose", "1", "--out", str(tmp_path / "m.skops")])
    lines = [r.getMessage() for r in caplog.records if r.name == "sklearn_relu"]
    assert len(lines) == 5
    assert re.match(r"run 0, epoch 5 \(5 steps, \d+\.\d s\): loss ", lines[-1])
