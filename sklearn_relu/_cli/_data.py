"""Reading data files: ``.npz`` (arrays X and y), ``.npy`` (memory-mapped, y
in its own file), ``.csv`` (see ``_csv``) and Parquet (a file, a directory or
a glob; see ``_parquet``), for ``fit`` and ``predict``."""

from pathlib import Path

import numpy as np

from .._worker import shard_bounds
from ._csv import load_csv, read_text_column
from ._parquet import ParquetTable, is_parquet


def load_data(path, target=None, target_column=None, shard=None, csv_header="auto",
              sample_weight_column=None):
    """``(X, y, sample_weight)`` from a ``.npz``, ``.npy``, ``.csv`` or
    Parquet file, or the Parquet files of a directory or a glob.

    Parameters
    ----------
    path : str or Path
    target : str or Path, optional
        A ``.npy`` file with ``y``; required when ``path`` is a ``.npy``.
    target_column : str or int, optional
        The ``.csv`` or Parquet column holding ``y``: its name (in the
        header), or its index (negative counts from the end). Default: the
        last column.
    shard : tuple (index, count), optional
        Only the rows of shard ``index`` of ``count`` (as
        ``MPIBackend(data="local")`` takes them), and only those are ever
        read: the equal contiguous shards of a memory-mapped ``.npy``, or
        Parquet data's shard ``index`` of its files (of its row groups when
        there are fewer files than ``count``).
    csv_header : {"auto", "yes", "no"}, default="auto"
        Whether a CSV's first line is column names. ``"auto"`` skips a line
        of names, reads a line of numbers, and raises when it cannot tell:
        no row is ever dropped or read silently by a guess.
    sample_weight_column : str or int, optional
        The ``.csv`` or Parquet column holding the sample weights (a name or
        an index, as ``target_column``); it is not a feature.

    Returns
    -------
    X : ndarray or pandas.DataFrame of shape (n_samples, n_features)
        A DataFrame with the column names when a ``.csv`` has a header or
        the data is Parquet, and pandas is installed, so that the model keeps
        them.
    y : ndarray of shape (n_samples,)
    sample_weight : ndarray of shape (n_samples,) or None
    """
    X, y, sample_weight, names = read_data(
        path, target, target_column, shard, csv_header, sample_weight_column
    )
    return with_names(X, names), y, sample_weight


def read_data(path, target=None, target_column=None, shard=None, csv_header="auto",
               sample_weight_column=None):
    """:func:`load_data`'s arrays, with ``X`` an array, and the names of its
    columns (a ``.csv`` header's or Parquet's; else None)."""
    if is_parquet(path):
        if target is not None:
            raise ValueError("--target is only for .npy data files")
        return _read_parquet(path, target_column, shard, sample_weight_column)
    path = Path(path)
    suffix = _check_data_file(path)
    if target is not None and suffix != ".npy":
        raise ValueError("--target is only for .npy data files")
    if target_column is not None and suffix != ".csv":
        raise ValueError("--target-column is only for .csv data files and Parquet data")
    if sample_weight_column is not None and suffix != ".csv":
        raise ValueError(
            "--sample-weight-column is only for .csv data files and Parquet data "
            "(a .npz file holds them as an array named sample_weight)"
        )
    if shard is not None and suffix != ".npy":
        raise ValueError(
            "--data local reads each rank's rows from a memory-mapped .npy file or "
            f"its own Parquet files: save X and y as .npy files (got {path.name!r})"
        )
    sample_weight = names = None
    if suffix == ".npz":
        with np.load(path) as archive:
            missing = {"X", "y"} - set(archive.files)
            if missing:
                raise ValueError(
                    f"{path} must hold arrays named 'X' and 'y'; it has "
                    f"{sorted(archive.files)}"
                )
            X, y = archive["X"], archive["y"]
            if "sample_weight" in archive.files:
                sample_weight = archive["sample_weight"]
    elif suffix == ".npy":
        if target is None:
            raise ValueError(f"{path} holds X only: give y with --target y.npy")
        X = np.load(path, mmap_mode="r")
        y = np.load(target, mmap_mode="r")
        if shard is not None:
            start, stop = shard_bounds(X.shape[0], shard[1], shard[0])
            X, y = X[start:stop], y[start:stop]
        y = np.array(y)
    else:
        names, table = load_csv(path, csv_header)
        column, weights, keep = _split_columns(
            path, names, table.shape[1], target_column, sample_weight_column
        )
        y = table[:, column]
        if weights is not None:
            sample_weight = table[:, weights]
        X = table[:, keep]
        names = None if names is None else [names[i] for i in keep]
    return X, y, sample_weight, names


def _read_parquet(source, target_column, shard, sample_weight_column):
    """:func:`read_data` for Parquet: only the rows of ``shard`` are read."""
    table = ParquetTable(source)
    names = table.names
    column, weights, keep = _split_columns(
        source, names, len(names), target_column, sample_weight_column
    )
    groups = [[names[i] for i in keep], [names[column]]]
    if weights is not None:
        groups.append([names[weights]])
    X, y, *sample_weight = table.read(groups, shard)
    sample_weight = sample_weight[0][:, 0] if sample_weight else None
    return X, y[:, 0], sample_weight, groups[0]


def _split_columns(path, names, n_columns, target_column, sample_weight_column):
    """``(target, weights, features)``: the indices of the target column, of
    the sample-weight column (or None) and of the feature columns."""
    if n_columns < 2:
        raise ValueError(f"{path} needs at least two columns: features, then y")
    column = _column_index(path, names, n_columns, target_column)
    weights = None
    if sample_weight_column is not None:
        weights = _column_index(path, names, n_columns, sample_weight_column,
                                flag="--sample-weight-column")
        if weights == column:
            raise ValueError(
                f"--sample-weight-column {sample_weight_column!r} is the target "
                f"column of {path}"
            )
    keep = [i for i in range(n_columns) if i not in (column, weights)]
    return column, weights, keep


def load_features(path, n_features, feature_names=None, target_column=None):
    """``X`` for prediction from a ``.npz`` (``X``), ``.npy``, ``.csv`` or
    Parquet file (or the Parquet files of a directory or a glob).

    A ``.csv`` or Parquet file may be the training file itself: with column
    names and a model that kept ``feature_names``, the columns are picked by
    name (in the model's order); otherwise a table of ``n_features + 1``
    columns drops the target column (``target_column``, default the last).
    """
    X, names, _ = read_features(path, n_features, feature_names, target_column)
    return with_names(X, names)


def read_features(path, n_features, feature_names=None, target_column=None, ignore=None):
    """:func:`load_features`'s ``X`` as an array, the names of its columns (or
    None), and whether they were picked by the model's ``feature_names``;
    a ``.csv`` or Parquet column named ``ignore`` (ids) is not read."""
    if is_parquet(path):
        table = ParquetTable(path)
        names = table.names
        if ignore is not None:
            _check_id_column(path, names + table.index_names, ignore)
            names = [name for name in names if name != ignore]
        columns, by_name = _feature_columns(
            path, names, len(names), n_features, feature_names, target_column
        )
        chosen = names if columns is None else [names[i] for i in columns]
        return table.read([chosen])[0], chosen, by_name
    path = Path(path)
    suffix = _check_data_file(path)
    if ignore is not None and suffix != ".csv":
        raise ValueError("--id-column is only for .csv data files and Parquet data")
    if suffix == ".npz":
        with np.load(path) as archive:
            if "X" not in archive.files:
                raise ValueError(
                    f"{path} must hold an array named 'X'; it has {sorted(archive.files)}"
                )
            return archive["X"], None, False
    if suffix == ".npy":
        return np.load(path, mmap_mode="r"), None, False
    names, table = load_csv(path, ignore=ignore)
    columns, by_name = _feature_columns(
        path, names, table.shape[1], n_features, feature_names, target_column
    )
    if columns is None:
        return table, names, by_name
    return table[:, columns], None if names is None else [names[i] for i in columns], by_name


def _feature_columns(path, names, n_columns, n_features, feature_names, target_column):
    """``(columns, by_name)``: the indices of the feature columns of a table
    of ``n_columns`` columns named ``names`` (or None) (None: all of them),
    and whether the model's ``feature_names`` picked them."""
    if names is not None and feature_names is not None:
        missing = [name for name in feature_names if name not in names]
        if missing:
            raise ValueError(
                f"{path} lacks the columns the model was fitted on: {missing}"
            )
        return [names.index(name) for name in feature_names], True
    if n_columns == n_features + 1:
        column = _column_index(path, names, n_columns, target_column)
        return [i for i in range(n_columns) if i != column], False
    if n_columns != n_features:
        raise ValueError(
            f"{path} has {n_columns} columns; the model needs {n_features} "
            f"features (or {n_features + 1} columns with the target)"
        )
    return None, False


def read_ids(path, name):
    """The text of the ``.csv`` or Parquet column ``name``, one field a row:
    the ids ``predict --id-column`` writes before each prediction."""
    if is_parquet(path):
        table = ParquetTable(path)
        _check_id_column(path, table.names + table.index_names, name)
        return table.read_text(name)
    return read_text_column(path, name)


def _check_id_column(path, names, name):
    if name not in names:
        raise ValueError(f"{path} has no column named {name!r}; it has {names}")


def _check_data_file(path):
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    if suffix not in (".npz", ".npy", ".csv"):
        raise ValueError(
            f"unsupported data file {path.name!r}: use .npz (X, y), .npy (with "
            "--target), .csv or Parquet (y in the last column)"
        )
    return suffix


def _column_index(path, names, n_columns, target_column, flag="--target-column"):
    """The index of the ``.csv`` or Parquet column ``target_column`` (a name
    or an index), which the command line gives with ``flag``."""
    if target_column is None:
        return n_columns - 1
    try:
        index = int(target_column)
    except ValueError:
        if names is None:
            raise ValueError(
                f"{flag} {target_column!r} is a name, but {path} has no "
                "header line; give the column's index"
            ) from None
        if target_column not in names:
            raise ValueError(
                f"{path} has no column named {target_column!r}; it has {names}"
            ) from None
        return names.index(target_column)
    if not -n_columns <= index < n_columns:
        raise ValueError(
            f"{flag} {index} is out of range for {path}'s {n_columns} columns"
        )
    return index % n_columns


def with_names(X, names):
    """``X`` as a DataFrame with column ``names`` where pandas is installed."""
    if names is None:
        return X
    try:
        import pandas as pd
    except ImportError:
        return X
    return pd.DataFrame(X, columns=names)


def keep_names(model, names):
    """Give ``model`` the ``.csv`` header's or Parquet's column ``names`` as
    ``feature_names_in_`` where it was fitted on an array (no pandas), as a
    DataFrame would have: ``predict`` then picks a file's columns by name."""
    first = model.steps[0][1] if hasattr(model, "steps") else model
    if names is not None and not hasattr(first, "feature_names_in_"):
        first.feature_names_in_ = np.asarray(names, dtype=object)

