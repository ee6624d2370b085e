"""``python -m sklearn_relu predict``, model files (skops, joblib), and what the
CLI keeps from a CSV: column names, the target column, a held-out score."""

import json
import re
import subprocess
import sys

import joblib
import numpy as np
import pytest
import skops.io
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._cli import _data, load_data, main
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
    assert main(["predict", str(model), data, "--out", str(out),
                 "--float-format", "%.17g"]) == 0
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
    main(["predict", str(model), str(shuffled), "--out", str(out),
          "--float-format", "%.17g"])
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
    monkeypatch.setattr(_data, "with_names", lambda X, names: X)  # as without pandas
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
    from sklearn_relu._cli._csv import load_csv

    (tmp_path / "d.csv").write_text(content)
    assert load_csv(tmp_path / "d.csv")[1].shape == shape


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
    main(["predict", str(model), data, "--out", str(out), "--float-format", "%.17g"])
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


# -- the CLI in pipes ---------------------------------------------------------------
@pytest.fixture
def fitted(tmp_path, planted):
    X, y = planted
    est = ReLURegressor(max_iter=3, tol=None, random_state=0).fit(X, y)
    save_model(est, tmp_path / "m.skops")
    np.savez(tmp_path / "X.npz", X=X)
    return tmp_path / "m.skops", tmp_path / "X.npz", est


@pytest.mark.parametrize("out", [["--out", "-"], []])
def test_predict_writes_to_standard_output_by_default_and_for_a_dash(
    fitted, out, capsys, tmp_path, monkeypatch,
):
    model, data, est = fitted
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(model), str(data), *out]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["prediction", *(f"{p:.9g}" for p in est.predict(np.load(data)["X"]))]
    assert not (tmp_path / "-").exists()


def test_float_format_sets_the_digits(fitted, capsys):
    model, data, est = fitted
    expected = est.predict(np.load(data)["X"])
    assert main(["predict", str(model), str(data), "--float-format", "%.17g"]) == 0
    exact = np.array(capsys.readouterr().out.splitlines()[1:], dtype=float)
    assert_array_equal(exact, expected)
    assert main(["predict", str(model), str(data), "--float-format", "%.3f"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == f"{expected[0]:.3f}"
    with pytest.raises(SystemExit):
        main(["predict", str(model), str(data), "--float-format", "%s%s"])
    assert "'%s%s' is not a %-format for one number" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(tmp_path):
    # Enough rows to fill the pipe's buffer many times over: the command is
    # still writing when the reader leaves, as with "| head -1".
    X, y = make_relu_regression(n_samples=40000, n_features=2, random_state=0)
    save_model(ReLURegressor(max_iter=1, tol=None, random_state=0).fit(X[:100], y[:100]),
               tmp_path / "m.skops")
    np.savez(tmp_path / "X.npz", X=X)
    command = [sys.executable, "-m", "sklearn_relu", "predict", str(tmp_path / "m.skops"),
               str(tmp_path / "X.npz")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline() == b"prediction\n"
    process.stdout.close()
    assert process.stderr.read() == b""
    assert process.wait(timeout=120) == 1  # as Python's own advice on SIGPIPE


def test_the_id_column_is_carried_into_the_output(tmp_path, planted, capsys):
    X, y = planted
    est = ReLURegressor(max_iter=3, tol=None, random_state=0)
    save_model(est.fit(pd.DataFrame(X, columns=["a", "b", "c"]), y), tmp_path / "m.skops")
    ids = [f"user-{i}" for i in range(len(y))]
    pd.DataFrame({"id": ids, "a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}).to_csv(
        tmp_path / "d.csv", index=False)
    out = tmp_path / "p.csv"
    args = ["predict", str(tmp_path / "m.skops"), str(tmp_path / "d.csv")]
    assert main([*args, "--id-column", "id", "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert list(written.columns) == ["id", "prediction"]
    assert list(written["id"]) == ids
    assert_allclose(written["prediction"],
                    est.predict(pd.DataFrame(X, columns=["a", "b", "c"])), rtol=1e-8)
    # The model's columns are picked by name: the ids are never a feature.
    with pytest.raises(ValueError, match=r"d\.csv has no column named 'key'; it has "
                       r"\['id', 'a', 'b', 'c'\]"):
        main([*args, "--id-column", "key"])
    np.savez(tmp_path / "X.npz", X=X)
    with pytest.raises(ValueError, match="--id-column is only for .csv data files"):
        main(["predict", str(tmp_path / "m.skops"), str(tmp_path / "X.npz"), "--id-column", "id"])


def test_sample_weight_column_weighs_the_fit(tmp_path, planted):
    X, y = planted
    w = np.linspace(0.5, 2.0, len(y))
    pd.DataFrame({"a": X[:, 0], "w": w, "b": X[:, 1], "c": X[:, 2], "y": y}).to_csv(
        tmp_path / "d.csv", index=False)
    X_read, y_read, w_read = load_data(tmp_path / "d.csv", sample_weight_column="w")
    assert list(X_read.columns) == ["a", "b", "c"]
    assert_array_equal(w_read, w)
    model = tmp_path / "m.joblib"
    assert main(["fit", str(tmp_path / "d.csv"), "--sample-weight-column", "w", *FIT,
                 "--out", str(model)]) == 0
    direct = ReLURegressor(random_state=0, max_iter=5, tol=None).fit(X, y, sample_weight=w)
    assert_array_equal(joblib.load(model).coef_, direct.coef_)
    with pytest.raises(ValueError, match="--sample-weight-column 'y' is the target column"):
        load_data(tmp_path / "d.csv", sample_weight_column="y")
    with pytest.raises(ValueError, match="--sample-weight-column 9 is out of range"):
        load_data(tmp_path / "d.csv", sample_weight_column="9")
    np.savez(tmp_path / "d.npz", X=X, y=y)
    with pytest.raises(ValueError, match="--sample-weight-column is only for .csv data files"):
        load_data(tmp_path / "d.npz", sample_weight_column="w")


@pytest.mark.parametrize("name, content, message", [
    ("cut.skops", None, "is a truncated or damaged skops file"),
    ("notes.skops", b"a text file\n", r"is not a skops file \(a \.skops model is a zip archive\)"),
    ("cut.joblib", None, "cannot be read as a joblib file"),
    ("list.joblib", "list", "holds a list, not a fitted model"),
])
def test_a_bad_model_file_is_one_line_naming_it(fitted, name, content, message):
    model, data, est = fitted
    bad = model.parent / name
    if content is None:  # the first half of a good file
        good = model.parent / ("good" + bad.suffix)
        save_model(est, good)
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif content == "list":
        joblib.dump([1, 2], bad)
    else:
        bad.write_bytes(content)
    with pytest.raises(ValueError, match=f"model file '{re.escape(str(bad))}' {message}"):
        main(["predict", str(bad), str(data)])
    result = subprocess.run([sys.executable, "-m", "sklearn_relu", "predict", str(bad),
                             str(data)], capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and str(bad) in result.stderr, result.stderr


def test_a_csv_that_is_not_utf8_names_the_file_and_line(fitted):
    model, _, _ = fitted
    bad = model.parent / "latin1.csv"
    bad.write_bytes("a,b,c\n1,2,3\n4,5,6 \u00e9t\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv, line 3: byte 0xe9 at column 7 is "
                       "not UTF-8 text; save the file as UTF-8"):
        main(["predict", str(model), str(bad)])
    with pytest.raises(ValueError, match=r"latin1\.csv, line 3: byte 0xe9"):
        load_data(bad)
