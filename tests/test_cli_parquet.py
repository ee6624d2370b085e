"""``python -m sklearn_relu`` on Parquet data: a file, a directory or a glob;
column names as for CSV; each ``--data local`` rank's own files or row groups;
errors that name the file. Runs under ``mpiexec`` are in ``test_mpi.py``
(``tests/mpi/check_parquet.py``)."""

import csv
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._cli import load_data, load_features, main
from sklearn_relu._cli._data import read_data, read_features, read_ids

pa = pytest.importorskip(
    "pyarrow", reason='the Parquet tests need pyarrow: pip install "sklearn-relu[parquet]"'
)
pq = pytest.importorskip("pyarrow.parquet")

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["a", "b", "c", "d"]


@pytest.fixture
def planted():
    X, y = make_relu_regression(n_samples=120, n_features=4, noise=0.05, random_state=0)
    return X, y


def table(X, y=None, names=NAMES, **more):
    columns = {name: X[:, j] for j, name in enumerate(names)}
    if y is not None:
        columns["y"] = y
    return pa.table({**columns, **more})


def write_parts(folder, X, y, sizes, row_group_size=None, **more):
    """Files ``part-00.parquet``, ... of consecutive rows, ``sizes`` rows each."""
    folder.mkdir(exist_ok=True)
    start = 0
    for k, n in enumerate(sizes):
        rows = slice(start, start + n)
        extra = {key: value[rows] for key, value in more.items()}
        pq.write_table(table(X[rows], y[rows], **extra), folder / f"part-{k:02d}.parquet",
                       row_group_size=row_group_size)
        start += n
    return folder


def fit(*args):
    assert main(["fit", *map(str, args)]) == 0


@pytest.mark.parametrize("source", ["file", "directory", "glob"])
def test_fit_from_a_file_a_directory_or_a_glob_equals_the_estimator(tmp_path, planted, source):
    X, y = planted
    if source == "file":
        path = tmp_path / "d.parquet"
        pq.write_table(table(X, y), path, row_group_size=50)
    else:
        folder = write_parts(tmp_path / "parts", X, y, [30, 50, 40])
        # Not data: Spark's marker, a hidden file, a file of another kind.
        for name in ("_SUCCESS", ".part-99.parquet", "notes.txt"):
            (folder / name).write_text("not data")
        path = folder if source == "directory" else folder / "part-*.parquet"
    out = tmp_path / "model.joblib"
    fit(path, "--solver", "qsgd", "--n-workers", "2", "--random-state", "0", "--out", out)
    model = joblib.load(out)
    direct = ReLURegressor(solver="qsgd", n_workers=2, random_state=0).fit(X, y)
    assert_array_equal(model.coef_, direct.coef_)
    assert list(model.feature_names_in_) == NAMES


def test_target_and_sample_weight_columns_by_name_or_index(tmp_path, planted):
    X, y = planted
    weights = np.linspace(0.5, 2.0, len(y))
    # The target first, the weights in the middle: columns are named, not placed.
    columns = {"price": y, "a": X[:, 0], "w": weights, **{n: X[:, j] for j, n in
                                                          enumerate(NAMES) if n != "a"}}
    pq.write_table(pa.table(columns), tmp_path / "d.parquet")
    direct = ReLURegressor(random_state=0).fit(X, y, weights)
    for target, weight in (("price", "w"), ("0", "2"), ("-6", "w")):
        out = tmp_path / f"{target}.joblib"
        fit(tmp_path / "d.parquet", "--target-column", target, "--sample-weight-column",
            weight, "--random-state", "0", "--out", out)
        model = joblib.load(out)
        assert_array_equal(model.coef_, direct.coef_)
        assert list(model.feature_names_in_) == NAMES
    X_read, y_read, w_read = load_data(tmp_path / "d.parquet", target_column="price",
                                       sample_weight_column="w")
    assert list(X_read.columns) == NAMES
    assert_array_equal(X_read.to_numpy(), X)
    assert_array_equal(y_read, y) and assert_array_equal(w_read, weights)


def test_float32_columns_stay_float32_and_others_become_float64(tmp_path):
    X = np.arange(12.0).reshape(6, 2)
    pq.write_table(pa.table({"a": X[:, 0].astype(np.float32), "b": X[:, 1].astype(np.float32),
                             "y": X[:, 0].astype(np.float32)}), tmp_path / "f32.parquet")
    X32, y32, _, names = read_data(tmp_path / "f32.parquet")
    assert X32.dtype == np.float32 and names == ["a", "b"]
    assert_array_equal(X32, X)
    flags = [True, False, True, True, False, False]
    pq.write_table(pa.table({"i": np.arange(6, dtype=np.int16), "flag": flags,
                             "f": X[:, 1].astype(np.float32), "y": X[:, 0]}),
                   tmp_path / "mixed.parquet")
    X64, y64, _, names = read_data(tmp_path / "mixed.parquet")
    assert X64.dtype == np.float64 and names == ["i", "flag", "f"]
    assert_array_equal(X64, np.column_stack([np.arange(6), flags, X[:, 1]]))
    assert_array_equal(y64, X[:, 0])


def test_a_pandas_index_stored_as_a_column_is_not_a_feature(tmp_path, planted):
    pd = pytest.importorskip("pandas")
    X, y = planted
    frame = pd.DataFrame(X, columns=NAMES).assign(y=y).iloc[10:]  # an index from 10
    frame.to_parquet(tmp_path / "d.parquet")
    X_read, y_read, _, names = read_data(tmp_path / "d.parquet")
    assert names == NAMES
    assert_array_equal(X_read, X[10:]) and assert_array_equal(y_read, y[10:])
    # An index of ids is no feature either, and --id-column finds it.
    ids = [f"user-{i}" for i in range(10, len(y))]
    frame.set_axis(pd.Index(ids, name="id")).to_parquet(tmp_path / "ids.parquet")
    X_read, _, _ = read_features(tmp_path / "ids.parquet", 4, NAMES, ignore="id")
    assert_array_equal(X_read, X[10:])
    assert read_ids(tmp_path / "ids.parquet", "id") == ids


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_predict_picks_the_models_columns_by_name_and_writes_the_ids(tmp_path, planted):
    X, y = planted
    pq.write_table(table(X, y), tmp_path / "train.parquet")
    model_path = tmp_path / "model.joblib"
    fit(tmp_path / "train.parquet", "--random-state", "0", "--out", model_path)
    model = joblib.load(model_path)
    # Other order, an id column of text, and a column the model does not use.
    ids = [f"user-{i}" for i in range(len(y))]
    columns = {"id": ids, "unused": ["x"] * len(y),
               **{name: X[:, j] for j, name in reversed(list(enumerate(NAMES)))}}
    write_parts(tmp_path / "new", X, y, [60, 60])
    pq.write_table(pa.table(columns), tmp_path / "new.parquet")
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(model_path), str(tmp_path / "new.parquet"),
                 "--id-column", "id", "--float-format", "%.17g", "--out", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["id", "prediction"]
    assert [row[0] for row in rows[1:]] == ids
    # Within rounding: the array read is laid out unlike X, which BLAS may sum apart.
    assert_allclose([float(row[1]) for row in rows[1:]], model.predict(X), rtol=1e-12,
                    atol=1e-12)
    # The training files themselves (a glob): the target column is not read.
    X_read = load_features(str(tmp_path / "new" / "*.parquet"), 4, model.feature_names_in_)
    assert list(X_read.columns) == NAMES and X_read.shape == X.shape


def test_predict_drops_the_target_for_a_model_fitted_without_names(tmp_path, planted):
    X, y = planted
    np.savez(tmp_path / "d.npz", X=X, y=y)
    model_path = tmp_path / "model.joblib"
    fit(tmp_path / "d.npz", "--random-state", "0", "--out", model_path)
    pq.write_table(table(X, y), tmp_path / "d.parquet")
    X_read = load_features(tmp_path / "d.parquet", 4)
    assert_array_equal(np.asarray(X_read), X)
    with pytest.raises(ValueError, match=r"d\.parquet has 5 columns; the model needs 3 features \(or 4 columns"):
        load_features(tmp_path / "d.parquet", 3)


# -- --data local: each rank's own files or row groups -----------------------------------
class _Counted:
    """The row groups pyarrow reads: ``(file name, index, rows)``."""

    def __init__(self, monkeypatch):
        self.read = []
        read_row_group = pq.ParquetFile.read_row_group
        init = pq.ParquetFile.__init__

        def named_init(file, source, *args, **kwargs):
            init(file, source, *args, **kwargs)
            file.test_name = Path(source).name

        def counted(file, index, *args, **kwargs):
            result = read_row_group(file, index, *args, **kwargs)
            self.read.append((file.test_name, index, result.num_rows))
            return result

        monkeypatch.setattr(pq.ParquetFile, "__init__", named_init)
        monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
        monkeypatch.setattr(pq.ParquetFile, "read", None)  # nothing reads a file whole


def test_each_shard_reads_only_its_own_files(tmp_path, planted, monkeypatch):
    X, y = planted
    folder = write_parts(tmp_path / "parts", X, y, [10, 20, 30, 40, 20], row_group_size=15)
    counted = _Counted(monkeypatch)
    shards, files = [], []
    for rank in range(2):
        counted.read.clear()
        shards.append(read_data(folder, shard=(rank, 2)))
        files.append(sorted({name for name, _, _ in counted.read}))
        assert sum(rows for _, _, rows in counted.read) == shards[-1][0].shape[0]
    # Files 0-2 and 3-4 (5 files in 2 shards: 3 and 2), each row group once.
    assert files == [[f"part-0{k}.parquet" for k in range(3)],
                     [f"part-0{k}.parquet" for k in range(3, 5)]]
    assert_array_equal(np.vstack([shard[0] for shard in shards]), X)
    assert_array_equal(np.concatenate([shard[1] for shard in shards]), y)


def test_with_fewer_files_than_ranks_each_shard_reads_its_row_groups(tmp_path, planted,
                                                                     monkeypatch):
    X, y = planted
    folder = write_parts(tmp_path / "parts", X, y, [50, 70], row_group_size=20)
    # Row groups: 20, 20, 10 in the first file, 20, 20, 20, 10 in the second.
    counted = _Counted(monkeypatch)
    sizes = []
    for rank in range(3):
        counted.read.clear()
        X_rank, y_rank, _, _ = read_data(folder, shard=(rank, 3))
        sizes.append([rows for _, _, rows in counted.read])
        assert X_rank.shape[0] == sum(sizes[-1]) < 120
    assert sizes == [[20, 20, 10], [20, 20], [20, 10]]
    with pytest.raises(ValueError, match=r"has 2 file\(s\) of 7 row group\(s\) in all, for 8 "
                                         r"ranks\. Write more files or smaller row groups"):
        read_data(folder, shard=(0, 8))


# -- errors: one line naming the file -----------------------------------------------------
def _write_bad(tmp_path, planted):
    X, y = planted
    pq.write_table(table(X, y), tmp_path / "good.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 this is not a Parquet file")
    (tmp_path / "truncated.parquet").write_bytes(
        (tmp_path / "good.parquet").read_bytes()[:-100]
    )
    pq.write_table(table(X, y, city=["Paris"] * len(y)), tmp_path / "text.parquet")
    pq.write_table(table(X, pa.array([1.0, None] * (len(y) // 2))), tmp_path / "null.parquet")
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    pq.write_table(table(X_nan, y), tmp_path / "nan.parquet")
    mixed = tmp_path / "mixed"
    write_parts(mixed, X, y, [60])
    pq.write_table(table(X[60:], y[60:], names=["a", "b", "c", "e"]),
                   mixed / "part-01.parquet")
    (tmp_path / "empty").mkdir()
    (tmp_path / "nested" / "year=2026").mkdir(parents=True)
    pq.write_table(table(X, y), tmp_path / "nested" / "year=2026" / "p.parquet")


@pytest.mark.parametrize("source, options, message", [
    ("missing.parquet", {}, r"data file '.*missing\.parquet' does not exist"),
    ("missing-*.parquet", {}, r"no file matches '.*missing-\*\.parquet'"),
    ("empty", {}, r"directory '.*empty' holds no \.parquet or \.pq files$"),
    ("nested", {}, r"holds no \.parquet or \.pq files \(those in its subdirectories are "
                   r"not read: give a glob such as '.*nested/\*\*/\*\.parquet'\)"),
    ("corrupt.parquet", {}, r".*corrupt\.parquet is not a readable Parquet file: "),
    ("truncated.parquet", {}, r".*truncated\.parquet is not a readable Parquet file: "),
    ("good.parquet", {"target_column": "price"},
     r".*good\.parquet has no column named 'price'; it has \['a', 'b', 'c', 'd', 'y'\]"),
    ("good.parquet", {"sample_weight_column": "y"},
     r"--sample-weight-column 'y' is the target column of .*good\.parquet"),
    ("text.parquet", {"target_column": "y"},
     r".*text\.parquet: column 'city' holds string, not numbers: only integer, float, "
     r"decimal and boolean columns are read"),
    ("null.parquet", {}, r".*null\.parquet: column 'y' has 60 missing \(null\) values"),
    ("nan.parquet", {}, r".*nan\.parquet: column 'b' has 1 NaN or infinite values"),
    ("mixed", {}, r".*part-01\.parquet has other columns than .*part-00\.parquet: \['e'\] "
                  r"more and \['d'\] fewer; every file must hold the same columns"),
])
def test_bad_parquet_data_is_named_in_the_error(tmp_path, planted, source, options, message):
    _write_bad(tmp_path, planted)
    with pytest.raises(ValueError, match=message):
        load_data(str(tmp_path / source), **options)


def test_float32_files_with_another_type_later_are_refused(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    for k, dtype in enumerate((np.float32, np.float64)):
        pq.write_table(pa.table({"a": np.ones(3, dtype=dtype), "y": np.ones(3)}),
                       folder / f"part-{k}.parquet")
    with pytest.raises(ValueError, match=r"part-1\.parquet: column 'a' is double, where "
                                         r".*part-0\.parquet stores it as float"):
        load_data(folder)


def test_options_for_other_formats_are_refused_and_ids_must_exist(tmp_path, planted):
    X, y = planted
    pq.write_table(table(X, y), tmp_path / "d.parquet")
    with pytest.raises(ValueError, match="--target is only for .npy data files"):
        load_data(tmp_path / "d.parquet", target=tmp_path / "y.npy")
    with pytest.raises(ValueError, match=r"d\.parquet has no column named 'id'; it has "):
        read_features(tmp_path / "d.parquet", 4, ignore="id")


def test_without_pyarrow_the_error_says_what_to_install(tmp_path, planted, monkeypatch):
    X, y = planted
    pq.write_table(table(X, y), tmp_path / "d.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=re.escape(
        'reading Parquet files needs pyarrow: pip install "sklearn-relu[parquet]"'
    )):
        load_data(tmp_path / "d.parquet")
    # A missing file is said first, whatever is installed.
    with pytest.raises(ValueError, match="does not exist"):
        load_data(tmp_path / "missing.parquet")


def test_a_corrupt_file_through_python_m_is_one_line_naming_it(tmp_path):
    (tmp_path / "d.parquet").write_bytes(b"not Parquet at all")
    failed = subprocess.run(
        [sys.executable, "-m", "sklearn_relu", "fit", str(tmp_path / "d.parquet"),
         "--out", str(tmp_path / "m.skops")],
        capture_output=True, text=True,
    )
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert len(failed.stderr.splitlines()) == 1, failed.stderr
    assert failed.stderr.startswith(
        f"python -m sklearn_relu: error: {tmp_path / 'd.parquet'} is not a readable "
        "Parquet file"
    )


# -- docs/cli.rst: the Parquet section's commands run as written --------------------------
def _parquet_section_blocks():
    """The ``(language, code)`` blocks of docs/cli.rst's Parquet section."""
    page = (ROOT / "docs" / "cli.rst").read_text()
    section = page[page.index(".. _cli-parquet:"):page.index("\nModel files\n")]
    blocks = []
    for match in re.finditer(r"\.\. code-block:: (\w+)\n\n((?:[ ]{3,}.*\n|\n)+)", section):
        lines = match.group(2).rstrip().splitlines()
        indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
        blocks.append((match.group(1), "\n".join(line[indent:] for line in lines)))
    return blocks


def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def test_the_docs_parquet_commands_run_as_written(tmp_path, monkeypatch):
    from sklearn_relu._persist import load_model

    blocks = _parquet_section_blocks()
    assert [language for language, _ in blocks] == ["bash", "python", "bash", "bash"]
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[1][1], "cli.rst", "exec"), {})
    coefs = []
    for _, code in blocks[2:]:
        for command in code.replace("\\\n", " ").splitlines():
            words = shlex.split(command)
            if words[:3] == [".venv/bin/python", "-m", "sklearn_relu"]:
                assert main(words[3:]) == 0  # as python -m runs it, without the start-up
            elif words[0] == ".venv/bin/mpiexec" and _mpiexec() is not None:
                words = [_mpiexec(), *[sys.executable if word == ".venv/bin/python" else word
                                       for word in words[1:]]]
                done = subprocess.run(words, capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, (command, done.stderr)
            else:
                assert words[0] == ".venv/bin/mpiexec", command
                continue
            if "fit" in words:
                coefs.append(load_model(tmp_path / "model.skops").coef_)
    # The directory and the glob fit the same model; so does --data local on
    # two ranks, where each rank's files are the shard --data all gives it.
    X, y, _ = load_data("data", target_column="price")
    reference = ReLURegressor(n_workers=2, random_state=0).fit(X, y)
    assert_array_equal(coefs[0], coefs[1])
    if len(coefs) == 3:
        assert_array_equal(coefs[2], reference.coef_)
    rows = list(csv.reader(open("predictions.csv")))
    assert [row[0] for row in rows] == ["id", "a", "b", "c"]
