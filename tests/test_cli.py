"""``python -m sklearn_relu``: reading data files, fitting, writing the model safely.

Runs under ``mpiexec`` are in ``test_mpi.py``.
"""

import inspect
import json
import re
import subprocess
import sys

import joblib
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._cli import build_parser, load_data, main, save_atomically
from sklearn_relu._params import PARAMETERS


@pytest.fixture
def data(tmp_path):
    X, y = make_relu_regression(n_samples=200, n_features=5, noise=0.05, random_state=0)
    return tmp_path, X, y


def write(tmp_path, X, y, kind):
    if kind == "npz":
        np.savez(tmp_path / "d.npz", X=X, y=y)
        return [str(tmp_path / "d.npz")]
    if kind == "npy":
        np.save(tmp_path / "X.npy", X)
        np.save(tmp_path / "y.npy", y)
        return [str(tmp_path / "X.npy"), "--target", str(tmp_path / "y.npy")]
    header = ",".join([f"x{i}" for i in range(X.shape[1])] + ["y"])
    np.savetxt(
        tmp_path / "d.csv",
        np.column_stack([X, y]),
        delimiter=",",
        header=header,
        comments="",
        fmt="%.17g",
    )
    return [str(tmp_path / "d.csv")]


@pytest.mark.parametrize("kind", ["npz", "npy", "csv"])
def test_fit_from_each_format_equals_the_estimator(data, kind, capsys):
    tmp_path, X, y = data
    out = tmp_path / "model.joblib"
    status = main(
        [
            "fit",
            *write(tmp_path, X, y, kind),
            "--solver",
            "qsgd",
            "--bits",
            "6",
            "--n-workers",
            "2",
            "--random-state",
            "0",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert status == 0
    summary = json.loads(capsys.readouterr().out)
    est = joblib.load(out)
    direct = ReLURegressor(solver="qsgd", bits=6, n_workers=2, random_state=0).fit(X, y)
    assert_array_equal(est.coef_, direct.coef_)
    assert summary["steps"] == direct.t_ and summary["n_workers"] == 2
    assert summary["bytes_sent"] == direct.comm_record_.bytes_sent


def test_npz_sample_weight_is_used(data):
    tmp_path, X, y = data
    weights = np.linspace(0.1, 3, X.shape[0])
    np.savez(tmp_path / "w.npz", X=X, y=y, sample_weight=weights)
    main(
        [
            "fit",
            str(tmp_path / "w.npz"),
            "--random-state",
            "0",
            "--max-iter",
            "3",
            "--tol",
            "none",
            "--out",
            str(tmp_path / "m.joblib"),
        ]
    )
    direct = ReLURegressor(random_state=0, max_iter=3, tol=None).fit(X, y, weights)
    assert_array_equal(joblib.load(tmp_path / "m.joblib").coef_, direct.coef_)


def test_joblib_backend_from_the_command_line(data):
    tmp_path, X, y = data
    args = [
        "fit",
        *write(tmp_path, X, y, "npz"),
        "--n-workers",
        "2",
        "--random-state",
        "0",
        "--max-iter",
        "3",
        "--tol",
        "none",
    ]
    main([*args, "--backend", "joblib", "--out", str(tmp_path / "a.joblib")])
    main([*args, "--backend", "inprocess", "--out", str(tmp_path / "b.joblib")])
    assert_array_equal(
        joblib.load(tmp_path / "a.joblib").coef_,
        joblib.load(tmp_path / "b.joblib").coef_,
    )


def test_a_failed_fit_leaves_the_earlier_model_untouched(data):
    tmp_path, X, y = data
    out = tmp_path / "model.joblib"
    out.write_bytes(b"an earlier model")
    # A step this long diverges within the fit, after the model file was checked.
    with pytest.raises(FloatingPointError, match="SGD diverged"):
        main(["fit", *write(tmp_path, X, y, "npz"), "--learning-rate", "50",
              "--random-state", "0", "--out", str(out)])
    assert out.read_bytes() == b"an earlier model"


def test_save_atomically_replaces_only_complete_files(tmp_path):
    out = tmp_path / "model.joblib"
    out.write_bytes(b"old")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_atomically(Unpicklable(), out)
    assert out.read_bytes() == b"old"
    save_atomically({"a": 1}, out)
    assert joblib.load(out) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["model.joblib"]


@pytest.mark.parametrize(
    "files, message",
    [
        (["missing.npz"], "does not exist"),
        (["bad.txt"], "unsupported data file"),
        (["noy.npz"], "must hold arrays named 'X' and 'y'"),
        (["X.npy"], "give y with --target"),
        (["onecol.csv"], "at least two columns"),
    ],
)
def test_bad_data_files_are_named_in_the_error(tmp_path, files, message):
    (tmp_path / "bad.txt").write_text("1,2\n")
    np.savez(tmp_path / "noy.npz", X=np.ones((3, 2)))
    np.save(tmp_path / "X.npy", np.ones((3, 2)))
    (tmp_path / "onecol.csv").write_text("1\n2\n")
    with pytest.raises(ValueError, match=message):
        load_data(tmp_path / files[0])


def test_command_line_help_and_errors_through_python_m(tmp_path):
    run = [sys.executable, "-m", "sklearn_relu"]
    helped = subprocess.run([*run, "fit", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0
    for documented in (
        ".npz",
        ".npy",
        ".csv",
        "mpiexec",
        "--solver",
        "--bits",
        "--out",
    ):
        assert documented in helped.stdout
    failed = subprocess.run(
        [*run, "fit", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1
    assert "error: data file" in failed.stderr and "Traceback" not in failed.stderr
    usage = subprocess.run(run, capture_output=True, text=True)
    assert usage.returncode == 2 and "fit" in usage.stderr


def test_an_error_through_python_m_is_the_exceptions_own_message(data):
    # The command line prints what the estimator says, word for word.
    tmp_path, X, y = data
    np.savez(tmp_path / "d.npz", X=X, y=y)
    with pytest.raises(ValueError, match="negative eigenvalue") as raised:
        ReLURegressor(n_workers=5, n_byzantine=1, attack="gaussian",
                      fit_intercept=False, random_state=0).fit(X, y)
    failed = subprocess.run(
        [sys.executable, "-m", "sklearn_relu", "fit", str(tmp_path / "d.npz"),
         "--n-workers", "5", "--n-byzantine", "1", "--attack", "gaussian",
         "--no-intercept", "--random-state", "0", "--out", str(tmp_path / "m.joblib")],
        capture_output=True, text=True,
    )
    assert failed.returncode == 1
    assert failed.stderr.endswith(f"python -m sklearn_relu: error: {raised.value}\n")


def test_a_diverged_fit_through_python_m_is_one_line(data):
    tmp_path, X, y = data
    np.savez(tmp_path / "d.npz", X=X, y=y)
    failed = subprocess.run(
        [sys.executable, "-m", "sklearn_relu", "fit", str(tmp_path / "d.npz"),
         "--learning-rate", "50", "--random-state", "0", "--out", str(tmp_path / "m.joblib")],
        capture_output=True, text=True,
    )
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert len(failed.stderr.splitlines()) == 1
    assert failed.stderr.startswith("python -m sklearn_relu: error: SGD diverged")


def _fit_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["fit", "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _help_options(text):
    """``--help``'s options: flag -> its help, on one line."""
    options, flag = {}, None
    for line in text.splitlines():
        start = re.match(r"  (--[\w-]+)", line)
        if start:
            flag = start.group(1)
            options[flag] = line[start.end():]
        elif flag is not None and line.startswith("   "):
            options[flag] += " " + line
        else:
            flag = None
    return {flag: " ".join(text.split()) for flag, text in options.items()}


def test_the_table_lists_every_estimator_parameter_in_order():
    signature = list(inspect.signature(ReLURegressor).parameters)
    assert [parameter.name for parameter in PARAMETERS] == signature
    defaults = {name: p.default for name, p in inspect.signature(ReLURegressor).parameters.items()}
    for parameter in PARAMETERS:
        assert parameter.default == defaults[parameter.name], parameter.name


def test_fit_help_gives_every_parameter_its_flag_and_default_or_says_why_not(capsys):
    text = _fit_help(capsys)
    options = _help_options(text)
    epilog = " ".join(text.split("not on the command line", 1)[1].split())
    parsed = build_parser().parse_args(["fit", "d.npz", "--out", "m.skops"])
    table = {parameter.name: parameter for parameter in PARAMETERS}
    for name, argument in inspect.signature(ReLURegressor).parameters.items():
        parameter, default = table[name], argument.default
        if parameter.flag is None:
            # Why it has no flag is said at the end of fit --help.
            assert parameter.cli and f"{name}: {parameter.cli}" in epilog, name
            assert name != "backend" or "--backend" in options
            continue
        assert parameter.flag in options, name
        assert getattr(parsed, name) == default, name
        if isinstance(default, bool):
            # A switch: given, it sets the other value.
            assert parameter.flag.startswith("--no-") == default, name
        else:
            shown = "none" if default is None else default
            assert f"(default: {shown})" in options[parameter.flag], name
        assert options[parameter.flag], f"{parameter.flag} has no help"


# A value other than the default for every estimator flag that takes one:
# the text given, and the value the estimator must receive.
_FLAG_VALUES = {
    "solver": ("topk", "topk"), "bits": ("4", 4), "bucket_size": ("16", 16),
    "encoding": ("elias", "elias"), "momentum": ("0.5", 0.5), "k": ("3", 3),
    "aggregation": ("median", "median"), "n_byzantine": ("1", 1),
    "attack": ("gaussian", "gaussian"), "batch_size": ("10", 10),
    "learning_rate": ("0.01", 0.01), "max_iter": ("7", 7), "tol": ("none", None),
    "n_iter_no_change": ("3", 3), "init": ("zeros", "zeros"), "n_ensemble": ("2", 2),
    "validation_fraction": ("0.2", 0.2), "n_workers": ("3", 3),
    "random_state": ("5", 5), "verbose": ("1", 1), "checkpoint": ("c.ckpt", "c.ckpt"),
    "checkpoint_every": ("2", 2), "worker_momentum": ("0.5", 0.5), "local_steps": ("2", 2),
}


def test_every_estimator_flag_reaches_the_estimator(data, monkeypatch):
    tmp_path, X, y = data

    class Built(Exception):
        pass

    def built(self, *args, **kwargs):
        raise Built(self.get_params())

    monkeypatch.setattr(ReLURegressor, "fit", built)
    argv, expected = ["fit", *write(tmp_path, X, y, "npz"), "--out", str(tmp_path / "m")], {}
    for parameter in PARAMETERS:
        if parameter.flag is None:
            continue
        if isinstance(parameter.default, bool):
            argv.append(parameter.flag)
            expected[parameter.name] = not parameter.default
        else:
            assert parameter.name in _FLAG_VALUES, f"give {parameter.flag} a value here"
            text, expected[parameter.name] = _FLAG_VALUES[parameter.name]
            argv += [parameter.flag, text]
    with pytest.raises(Built) as raised:
        main(argv)
    params = raised.value.args[0]
    assert {name: params[name] for name in expected} == expected
    assert params["backend"] == "inprocess"


def test_version_prints_the_packages(capsys):
    import sklearn_relu

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sklearn_relu {sklearn_relu.__version__}"


def test_help_lists_the_reproductions(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["reproduce", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in ("fig1", "fig2", "table2"):
        assert name in text


def test_reproduce_runs_the_example_script(tmp_path):
    """A tiny Figure 1a through the CLI writes its figure and table."""
    from sklearn_relu._cli import main

    status = main([
        "reproduce", "fig1", "--panels", "a", "--n-features", "10",
        "--batch-sizes", "20", "50", "--steps-a", "30", "--out-dir", str(tmp_path),
    ])
    assert status == 0
    written = {p.suffix for p in tmp_path.iterdir()}
    assert ".png" in written and ".csv" in written


def test_reproductions_write_outside_the_repository_unless_told(tmp_path, monkeypatch):
    """By default into ./reproduce_output; docs/figures only with --update-docs."""
    import argparse
    from pathlib import Path

    from sklearn_relu._cli import main

    monkeypatch.chdir(tmp_path)
    figures = Path(__file__).resolve().parents[1] / "docs" / "figures"
    before = {p.name: p.stat().st_mtime_ns for p in figures.iterdir()}
    assert main(["reproduce", "fig1", "--panels", "a", "--n-features", "10",
                 "--batch-sizes", "20", "--steps-a", "10"]) == 0
    written = {p.name for p in (tmp_path / "reproduce_output").iterdir()}
    assert written == {"fig1a.png", "fig1a.csv", "fig1a.md"}
    assert {p.name: p.stat().st_mtime_ns for p in figures.iterdir()} == before

    examples = Path(__file__).resolve().parents[1] / "examples"
    monkeypatch.syspath_prepend(str(examples))
    from _tracing import add_output_arguments, chosen_out_dir

    parser = argparse.ArgumentParser()
    add_output_arguments(parser)
    assert chosen_out_dir(parser.parse_args([])) == Path("reproduce_output")
    assert chosen_out_dir(parser.parse_args(["--out-dir", "x"])) == Path("x")
    assert chosen_out_dir(parser.parse_args(["--update-docs"])) == figures
    with pytest.raises(SystemExit):
        parser.parse_args(["--update-docs", "--out-dir", "x"])
    # Every reproduction takes these flags, and none writes docs/figures itself.
    for script in examples.glob("reproduce_*.py"):
        text = script.read_text()
        assert "add_output_arguments(parser)" in text and "chosen_out_dir(args)" in text
        assert '"figures"' not in text, script


def test_encoding_and_bucket_size_reach_the_estimator(data, capsys):
    tmp_path, X, y = data
    out = tmp_path / "model.joblib"
    args = ["fit", *write(tmp_path, X, y, "npz"), "--solver", "qsgd", "--bits", "2",
            "--encoding", "elias", "--bucket-size", "4", "--random-state", "0",
            "--out", str(out), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    est = joblib.load(out)
    assert (est.encoding, est.bucket_size) == ("elias", 4)
    direct = ReLURegressor(
        solver="qsgd", bits=2, encoding="elias", bucket_size=4, random_state=0
    ).fit(X, y)
    assert_array_equal(est.coef_, direct.coef_)
    assert summary["bytes_sent"] == direct.comm_record_.bytes_sent


def test_byzantine_workers_and_their_attack_reach_the_estimator(data, capsys):
    tmp_path, X, y = data
    out = tmp_path / "model.joblib"
    args = ["fit", *write(tmp_path, X, y, "npz"), "--n-workers", "5",
            "--n-byzantine", "1", "--attack", "scaled", "--aggregation", "median",
            "--random-state", "0", "--max-iter", "5", "--out", str(out)]
    assert main(args) == 0
    est = joblib.load(out)
    assert (est.n_byzantine, est.attack, est.aggregation) == (1, "scaled", "median")
    direct = ReLURegressor(n_workers=5, n_byzantine=1, attack="scaled",
                           aggregation="median", random_state=0, max_iter=5).fit(X, y)
    assert_array_equal(est.coef_, direct.coef_)
    # The attacker is there: without it the median fit is another one.
    honest = ReLURegressor(n_workers=5, aggregation="median", random_state=0,
                           max_iter=5).fit(X, y)
    assert not np.array_equal(honest.coef_, direct.coef_)


def test_an_unknown_attack_is_an_argparse_error(data, capsys):
    tmp_path, X, y = data
    with pytest.raises(SystemExit):
        main(["fit", *write(tmp_path, X, y, "npz"), "--attack", "nonsense",
              "--out", str(tmp_path / "m.joblib")])
    assert "--attack: invalid choice: 'nonsense'" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [
    ("--tol", "abc"), ("--learning-rate", "fast"), ("--batch-size", "1.5"), ("--k", "x"),
    ("--max-iter", "nan"), ("--momentum", "high"),
    # Out of range: refused before any data is read, as fit would refuse it.
    ("--bits", "1"), ("--verbose", "-1"), ("--init", "ones"),
])
def test_a_bad_flag_value_is_one_line_that_says_what_is_expected(data, capsys, flag, value):
    tmp_path, X, y = data
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *write(tmp_path, X, y, "npz"), flag, value,
              "--out", str(tmp_path / "m.joblib")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    parameter = next(p for p in PARAMETERS if p.flag == flag)
    # What the table says the parameter accepts (--init: its named starts).
    expected = (f"invalid choice: {value!r}" if flag == "--init"
                else f"must be {parameter.accepts.text}, got {value!r}")
    assert f"argument {flag}: {expected}" in err, err
    assert "usage:" not in err and len(err.strip().splitlines()) == 1
    assert "--help" in err


@pytest.mark.parametrize("rank, printed", [("0", True), ("1", False)])
@pytest.mark.parametrize("argv", [["fit", "d.npz", "--out", "m", "--tol", "x"],
                                  ["fit", "d.npz", "--nope"], ["nope"]])
def test_under_mpiexec_only_rank_0_reports_a_bad_command_line(
    monkeypatch, capsys, rank, printed, argv
):
    # Every rank parses the same command line: one message, not one a rank.
    monkeypatch.setenv("PMI_RANK", rank)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert ("error:" in capsys.readouterr().err) == printed


@pytest.mark.parametrize("flags", [["--topology", "allreduce"], ["--data", "local"]])
@pytest.mark.parametrize("backend", ["inprocess", "joblib"])
def test_mpi_flags_without_mpi_are_an_error(data, flags, backend):
    tmp_path, X, y = data
    with pytest.raises(ValueError, match=f"{flags[0]} apply to MPI runs"):
        main(["fit", *write(tmp_path, X, y, "npz"), *flags, "--backend", backend,
              "--out", str(tmp_path / "m.joblib")])


def test_backend_mpi_without_a_launcher_says_so(data, capsys, monkeypatch):
    pytest.importorskip("mpi4py")
    from sklearn_relu._cli._launcher import MPI_LAUNCHER_VARIABLES

    for name in MPI_LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    tmp_path, X, y = data
    args = ["fit", *write(tmp_path, X, y, "npz"), "--backend", "mpi", "--max-iter", "2",
            "--random-state", "0", "--out", str(tmp_path / "model.joblib")]
    assert main(args) == 0
    assert "--backend mpi without mpiexec runs one MPI rank" in capsys.readouterr().err


def test_a_warning_prints_its_message_not_the_source_line(data, capsys):
    tmp_path, X, y = data
    # Every target below 0: the fit warns that a ReLU can only predict 0 or more.
    args = ["fit", *write(tmp_path, X, -np.abs(y) - 1, "npz"), "--max-iter", "2",
            "--random-state", "0", "--out", str(tmp_path / "m.joblib")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "warning (ConvergenceWarning): The fit predicts the training data worse" in err
    assert "all targets are <= 0" in err
    assert "warnings.warn(" not in err


def test_a_warning_is_the_estimators_own_message(data, capsys):
    tmp_path, X, y = data
    # A tiny step, cut short: the estimator warns, and the command line prints
    # its message word for word.
    with pytest.warns(ConvergenceWarning) as caught:
        ReLURegressor(learning_rate=1e-3, max_iter=1, tol=None, random_state=0).fit(X, y + 3.0)
    args = ["fit", *write(tmp_path, X, y + 3.0, "npz"), "--learning-rate", "1e-3",
            "--max-iter", "1", "--tol", "none", "--random-state", "0",
            "--out", str(tmp_path / "m.joblib")]
    assert main(args) == 0
    err = capsys.readouterr().err
    for warning in caught:
        assert f"warning ({warning.category.__name__}): {warning.message}\n" in err, err


def test_the_headers_are_said_to_dominate_only_where_they_do(data, capsys):
    tmp_path, X, y = data  # 5 features and the intercept: 6 values a message
    args = ["fit", *write(tmp_path, X, y, "npz"), "--max-iter", "1", "--random-state", "0",
            "--out", str(tmp_path / "m.joblib")]
    # IntSGD at 8 bits: 6 one-byte integers beside a 66-byte trailer (and
    # the 8 bytes of the first step's exact scale).
    assert main([*args, "--solver", "intsgd"]) == 0
    out = capsys.readouterr().out
    assert ("% of float64: every message's header counts, and at this size it dominates "
            "(82.5% of the bytes)") in out, out
    # Plain SGD: an 8-byte header on 48 bytes of values (14%); no remark.
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "117% of float64)" in out and "dominates" not in out, out


def test_no_header_remark_at_500_features(tmp_path, capsys):
    # The first user's trial: plain SGD at d = 500, where the header is 0.2%.
    X, y = make_relu_regression(n_samples=200, n_features=500, random_state=0)
    args = ["fit", *write(tmp_path, X, y, "npz"), "--max-iter", "1", "--random-state", "0",
            "--out", str(tmp_path / "m.joblib")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "100% of float64)" in out and "dominates" not in out, out
