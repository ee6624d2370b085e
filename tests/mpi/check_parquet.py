"""Run under mpiexec: ``fit --data local`` on Parquet data.

Each rank reads only its own files (when there are at least as many files as
ranks) or its own row groups (otherwise): the row groups each rank read are
counted where pyarrow reads them. The model is the one
``MPIBackend(data="local")`` fits on those rows and, where each rank's rows
are the equal contiguous shard the in-process fit gives its worker, the
in-process model with K workers, to the last bit. Assertions hold for any
number of ranks K.
"""

import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mpi4py import MPI

from sklearn_relu import ReLURegressor, make_relu_regression
from sklearn_relu._cli import main
from sklearn_relu._worker import shard_bounds
from sklearn_relu.backends import MPIBackend

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
N_ROWS = 240
X, y = make_relu_regression(n_samples=N_ROWS, n_features=5, noise=0.1, random_state=2)
frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(5)])
PARAMS = dict(solver="qsgd", bits=4, batch_size=24, max_iter=4, random_state=3)
FLAGS = ["--solver", "qsgd", "--bits", "4", "--batch-size", "24", "--max-iter", "4",
         "--random-state", "3"]
warnings.simplefilter("ignore")  # max_iter=4 does not converge: not the point here

# Every row group this rank reads: (file name, row group index, rows).
READ = []
_init, _read_row_group = pq.ParquetFile.__init__, pq.ParquetFile.read_row_group


def _named_init(self, source, *args, **kwargs):
    _init(self, source, *args, **kwargs)
    self._name = Path(source).name


def _counted_read_row_group(self, i, *args, **kwargs):
    table = _read_row_group(self, i, *args, **kwargs)
    READ.append((self._name, i, table.num_rows))
    return table


pq.ParquetFile.__init__ = _named_init
pq.ParquetFile.read_row_group = _counted_read_row_group
# Nothing else reads rows: a whole-file read would go uncounted.
pq.ParquetFile.read = pq.ParquetFile.read_row_groups = None


def write(folder, sizes, row_group_size):
    """Files of ``sizes`` rows (X's and y's rows in order); their row groups."""
    folder.mkdir()
    groups, start = [], 0
    for k, n in enumerate(sizes):
        name = f"part-{k:02d}.parquet"
        table = pa.table({**{c: frame[c].to_numpy()[start:start + n] for c in frame},
                          "y": y[start:start + n]})
        pq.write_table(table, folder / name, row_group_size=row_group_size)
        groups.append([(name, g, min(row_group_size, n - g * row_group_size))
                       for g in range(-(-n // row_group_size))])
        start += n
    return groups


def my_part(groups):
    """The row groups this rank should read: its files' when there are as
    many files as ranks, else its own row groups."""
    if len(groups) >= size:
        start, stop = shard_bounds(len(groups), size, rank)
        return [g for file in groups[start:stop] for g in file]
    flat = [g for file in groups for g in file]
    start, stop = shard_bounds(len(flat), size, rank)
    return flat[start:stop]


# (rows of each file, row group size): at least as many files as ranks (each
# rank reads its files), one file of row groups (each rank reads its row
# groups), and files of unequal sizes.
LAYOUTS = {
    "files": ([60, 60, 60, 60], 60),
    "row-groups": ([240], 60),
    "unequal": ([30, 90, 20, 100], 50),
}
folder = Path(comm.bcast(tempfile.mkdtemp() if rank == 0 else None, root=0))
try:
    for layout, (sizes, row_group_size) in LAYOUTS.items():
        source = folder / layout
        groups = write(source, sizes, row_group_size) if rank == 0 else None
        groups = comm.bcast(groups, root=0)
        out = folder / f"{layout}.joblib"
        READ.clear()
        assert main(["fit", str(source), "--data", "local", "--out", str(out), *FLAGS]) == 0
        read = list(READ)
        comm.Barrier()  # rank 0 has written the model

        # Each rank read its own row groups, once, and no rank read them all.
        expected = my_part(groups)
        assert read == expected, (layout, rank, read, expected)
        counts = comm.allgather(sum(rows for _, _, rows in read))
        assert sum(counts) == N_ROWS, counts
        assert size == 1 or max(counts) < N_ROWS, counts
        if rank == 0:
            print(f"{layout}: rows read per rank {counts}", file=sys.stderr)

        # Its rows are a contiguous range of the files in order.
        start = sum(counts[:rank])
        mine = slice(start, start + counts[rank])
        model = joblib.load(out)
        assert list(model.feature_names_in_) == list(frame.columns)
        local = ReLURegressor(backend=MPIBackend(data="local"), **PARAMS)
        local.fit(frame[mine], y[mine])
        np.testing.assert_array_equal(model.coef_, local.coef_)
        assert model.intercept_ == local.intercept_
        assert model.n_workers_ == size
        if all(comm.allgather((mine.start, mine.stop)
                              == shard_bounds(N_ROWS, size, rank))):
            reference = ReLURegressor(n_workers=size, **PARAMS).fit(frame, y)
            np.testing.assert_array_equal(model.coef_, reference.coef_)
            assert model.intercept_ == reference.intercept_
            if rank == 0:
                print(f"{layout}: equals the in-process fit", file=sys.stderr)
finally:
    comm.Barrier()
    if rank == 0:
        shutil.rmtree(folder)

if rank == 0:
    print(f"ok: {size} ranks", file=sys.stderr)
