"""Reading Parquet data (pyarrow, the ``parquet`` extra): one file, a
directory of them or a glob, read in order as one table; under
``--data local`` each MPI rank reads its own files, or its own row groups when
there are fewer files than ranks, so that no rank reads the whole set.

The first file's schema is the table's: its column names (less the index a
pandas DataFrame stores as a column) and whether a group of columns stays
float32. Every other file must hold the same columns, in any order.
"""

import glob
from pathlib import Path

import numpy as np

from .._worker import shard_bounds

#: The suffixes of a Parquet file; a directory is read as its files with them.
SUFFIXES = (".parquet", ".pq")

_INSTALL = 'reading Parquet files needs pyarrow: pip install "sklearn-relu[parquet]"'


def is_parquet(path):
    """Whether ``path`` names Parquet data: a file with a Parquet suffix, a
    directory, or a glob pattern that is not itself a file's name."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in SUFFIXES
    return (
        path.suffix.lower() in SUFFIXES or path.is_dir()
        or any(char in str(path) for char in "*?[")
    )


def parquet_files(source):
    """The files ``source`` (a file, a directory or a glob) names, sorted by
    path: the order of the table's rows."""
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            child for child in path.iterdir()
            if child.is_file() and child.suffix.lower() in SUFFIXES
            # Spark's _SUCCESS and _metadata, hidden files: not data.
            and not child.name.startswith(("_", "."))
        )
        if not files:
            nested = any(path.glob("*/**/*.parquet")) or any(path.glob("*/**/*.pq"))
            raise ValueError(
                f"directory {str(path)!r} holds no .parquet or .pq files"
                + (" (those in its subdirectories are not read: give a glob such as "
                   f"'{path}/**/*.parquet')" if nested else "")
            )
        return files
    if any(char in str(source) for char in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(source), recursive=True)
                       if Path(p).is_file())
        if not files:
            raise ValueError(f"no file matches {str(source)!r}")
        return files
    raise ValueError(f"data file {str(source)!r} does not exist")


def _parquet():
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "pyarrow":
            raise
        raise ImportError(_INSTALL) from None
    except ImportError as exc:  # installed, but not for this NumPy (say)
        raise ImportError(f"reading Parquet files needs pyarrow, which fails: {exc}") from None
    return pq


def _open(pq, path):
    """``pq.ParquetFile(path)``; an unreadable file is a ValueError naming it."""
    import pyarrow as pa

    try:
        return pq.ParquetFile(path)
    except pa.ArrowException as exc:
        raise ValueError(f"{path} is not a readable Parquet file: {exc}") from None


class ParquetTable:
    """The Parquet files of ``source`` as one table of numeric columns.

    Parameters
    ----------
    source : str or Path
        A Parquet file, a directory of them, or a glob of files.
    """

    def __init__(self, source):
        self.source = str(source)
        self.files = parquet_files(source)
        self._pq = _parquet()
        with _open(self._pq, self.files[0]) as first:
            schema = first.schema_arrow
        self._types = _data_columns(self.files[0], schema)
        #: The column names, in the first file's order.
        self.names = list(self._types)
        #: The columns of a pandas index (not data, but ids may be there).
        self.index_names = [name for name in schema.names if name not in self._types]

    def read(self, groups, shard=None):
        """One 2-D array a group of columns (a list of names), of the rows
        the ``shard`` ``(index, count)`` reads (all rows without one).

        A group stays float32 where each of its columns is float32 in the
        first file, else is float64.
        """
        import pyarrow as pa

        dtypes = [
            np.float32 if all(pa.types.is_float32(self._types[n]) for n in group)
            else np.float64
            for group in groups
        ]
        pieces = self._pieces(shard)
        n_rows = sum(rows for _, _, rows in pieces)
        arrays = [np.empty((n_rows, len(g)), dtype=d) for g, d in zip(groups, dtypes)]
        wanted = [name for group in groups for name in group]
        offset = 0
        for path, row_groups, _ in pieces:
            with _open(self._pq, path) as file:
                self._check_columns(path, file.schema_arrow, groups, dtypes)
                for index in row_groups:
                    table = self._read_row_group(path, file, index, wanted)
                    stop = offset + table.num_rows
                    for array, group in zip(arrays, groups):
                        for j, name in enumerate(group):
                            array[offset:stop, j] = _values(path, table.column(name), name)
                    offset = stop
        if shard is None and n_rows == 0:
            raise ValueError(f"{self.source} has no data rows")
        return arrays

    def read_text(self, name):
        """The column ``name`` of every row, as text (a null is empty)."""
        texts = []
        for path in self.files:
            with _open(self._pq, path) as file:
                column = file.read(columns=[name]).column(name)
            texts += ["" if value is None else str(value) for value in column.to_pylist()]
        return texts

    def _pieces(self, shard):
        """``(file, row group indices, rows)`` this process reads: every
        file, or its shard's files, or its shard's row groups."""
        files = self.files
        if shard is not None and len(files) >= shard[1]:
            start, stop = shard_bounds(len(files), shard[1], shard[0])
            files = files[start:stop]
        pieces = []
        for path in files:
            with _open(self._pq, path) as file:
                metadata = file.metadata
            pieces += [
                (path, [i], metadata.row_group(i).num_rows)
                for i in range(metadata.num_row_groups)
            ]
        if shard is None or len(self.files) >= shard[1]:
            return _by_file(pieces)
        if len(pieces) < shard[1]:
            raise ValueError(
                f"--data local gives each MPI rank its own Parquet files, or its own "
                f"row groups when there are fewer files than ranks: {self.source} has "
                f"{len(self.files)} file(s) of {len(pieces)} row group(s) in all, for "
                f"{shard[1]} ranks. Write more files or smaller row groups "
                "(pyarrow.parquet.write_table(..., row_group_size=...)), or launch "
                "fewer ranks"
            )
        start, stop = shard_bounds(len(pieces), shard[1], shard[0])
        return _by_file(pieces[start:stop])

    def _check_columns(self, path, schema, groups, dtypes):
        """``path`` holds the first file's columns, numeric, float32 where a
        group stays float32."""
        types = _data_columns(path, schema) if path != self.files[0] else self._types
        if set(types) != set(self._types):
            raise ValueError(
                f"{path} has other columns than {self.files[0]}: "
                f"{sorted(set(types) - set(self._types))} more and "
                f"{sorted(set(self._types) - set(types))} fewer; every file "
                "must hold the same columns"
            )
        import pyarrow as pa

        for group, dtype in zip(groups, dtypes):
            for name in group:
                _check_numeric(path, name, types[name])
                if dtype == np.float32 and not pa.types.is_float32(types[name]):
                    raise ValueError(
                        f"{path}: column {name!r} is {types[name]}, where "
                        f"{self.files[0]} stores it as float: every file must "
                        "store the columns in the same types"
                    )

    def _read_row_group(self, path, file, index, columns):
        import pyarrow as pa

        try:
            table = file.read_row_group(index, columns=columns)
        except pa.ArrowException as exc:
            raise ValueError(
                f"{path}: row group {index} cannot be read: {exc}"
            ) from None
        # The arrays were sized by the metadata: no row may be left unwritten.
        if table.num_rows != file.metadata.row_group(index).num_rows:
            raise ValueError(
                f"{path}: row group {index} holds {table.num_rows} rows where the "
                f"file's metadata says {file.metadata.row_group(index).num_rows}"
            )
        return table


def _by_file(pieces):
    """Consecutive row groups of one file as one piece (one open)."""
    merged = []
    for path, groups, rows in pieces:
        if merged and merged[-1][0] == path:
            merged[-1] = (path, merged[-1][1] + groups, merged[-1][2] + rows)
        else:
            merged.append((path, groups, rows))
    return merged


def _data_columns(path, schema):
    """``{name: type}`` of the data columns of ``schema``, in order: without
    the index a pandas DataFrame stores as a column (``__index_level_0__``),
    which is not data."""
    index = (schema.pandas_metadata or {}).get("index_columns", [])
    names = [name for name in schema.names if name not in index]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # the model picks columns by name: each must be one column
        raise ValueError(f"{path}: the column names {repeated} appear more than once")
    return {name: schema.field(name).type for name in names}


def _check_numeric(path, name, type_):
    import pyarrow as pa

    if not (pa.types.is_integer(type_) or pa.types.is_floating(type_)
            or pa.types.is_boolean(type_) or pa.types.is_decimal(type_)):
        raise ValueError(
            f"{path}: column {name!r} holds {type_}, not numbers: only integer, "
            "float, decimal and boolean columns are read"
        )


def _values(path, column, name):
    """The NumPy values of a column (a ``pyarrow.ChunkedArray``) without
    missing values: neither nulls nor, in a float column, NaN or infinity."""
    if column.null_count:
        raise ValueError(
            f"{path}: column {name!r} has {column.null_count} missing (null) values"
        )
    values = column.to_numpy()
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise ValueError(f"{path}: column {name!r} has {bad} NaN or infinite values")
    return values
