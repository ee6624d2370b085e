"""Reading a CSV file of numbers: whether its first line is column names, an
id column left out, and errors that say which line and column are wrong."""

import csv
import itertools

import numpy as np

# Fields that spreadsheets and pandas write for a missing value.
_MISSING = {"", "na", "n/a", "nan", "null", "none", "-", "?"}


def _number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


def _csv_has_header(path, first):
    """Whether the first line ``first`` is column names; raise when unsure."""
    fields = [field.strip().strip('"') for field in first.split(",")]
    unsure = None
    if any(field.lower() in _MISSING for field in fields):
        unsure = "has a missing value (such as NA or an empty field)"
    elif all(_number(field) for field in fields):
        if fields == [str(i) for i in range(len(fields))] and len(fields) > 1:
            unsure = "reads 0,1,2,...: pandas' default column names, or data"
        else:
            return False
    elif any(_number(field) for field in fields):
        unsure = "mixes numbers and names"
    if unsure:
        raise ValueError(
            f"cannot tell whether the first line of {path} is column names or "
            f"data: it {unsure}. Say which with --csv-header yes or no "
            "(load_data(..., csv_header='yes'|'no'))"
        )
    return True


def load_csv(path, csv_header="auto", ignore=None):
    """``(names, table)``: the header's column names (or None) and the numbers,
    without the column named ``ignore`` (an id column: text, not read)."""
    if csv_header not in ("auto", "yes", "no"):
        raise ValueError(
            f"csv_header must be 'auto', 'yes' or 'no', got {csv_header!r}"
        )
    try:
        return _read_csv(path, csv_header, ignore)
    except UnicodeDecodeError:
        raise ValueError(_not_utf8(path)) from None


def _not_utf8(path):
    """Where a file stops being UTF-8 text, in words."""
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                return (
                    f"{path}, line {number}: byte {line[error.start]:#04x} at column "
                    f"{error.start + 1} is not UTF-8 text; save the file as UTF-8 "
                    "(Excel: CSV UTF-8)"
                )
    return f"{path} is not UTF-8 text; save the file as UTF-8"


def _read_csv(path, csv_header, ignore):
    # utf-8-sig: a byte-order mark (Excel writes one) is not part of the data.
    with open(path, encoding="utf-8-sig") as file:
        first = file.readline()
        second = next((line for line in file if line.strip()), "")
    if not first.strip():
        raise ValueError(f"{path} is empty: it has no data rows")
    # Before the header is guessed (a first line of data must not be taken for
    # one); two lines without a comma and with the same other separator, so
    # that a one-column file whose name holds a ';' still reads.
    hint = _separator_hint(first.strip().split(","))
    if hint and hint == _separator_hint(second.strip().split(",")):
        raise ValueError(f"{path}, line 1: no comma{hint}")
    if csv_header == "auto":
        skip = int(_csv_has_header(path, first))
    else:
        skip = int(csv_header == "yes")
    if not _has_rows(path, skip):
        raise ValueError(f"{path} has column names but no data rows")
    names = [f.strip().strip('"') for f in first.rstrip("\r\n").split(",")] if skip else None
    if names is not None:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:  # the model picks columns by name: each must be one column
            raise ValueError(
                f"{path}, line 1: the column names {repeated} appear more than once"
            )
    ignored, usecols = None, None
    if ignore is not None:
        if names is None or ignore not in names:
            raise ValueError(
                f"{path} has no column named {ignore!r}"
                + (f"; it has {names}" if names else " (it has no header line)")
            )
        ignored = names.index(ignore)
        usecols = [i for i in range(len(names)) if i != ignored]
    try:
        table = np.loadtxt(
            path, delimiter=",", skiprows=skip, ndmin=2, encoding="utf-8-sig",
            usecols=usecols,
        )
    except ValueError as error:
        # NumPy's message (about usecols, or a field) does not say where.
        raise ValueError(
            _csv_problem(path, skip, ignored) or f"{path}: {error}"
        ) from None
    if ignored is not None:
        names = [name for i, name in enumerate(names) if i != ignored]
    if names is not None and len(names) != table.shape[1]:
        raise ValueError(
            f"{path}, line 1: the header names {len(names)} columns, the rows "
            f"have {table.shape[1]}"
        )
    return names, table


def read_text_column(path, name):
    """The text of the column ``name`` of a ``.csv`` with a header, a field a
    row (blank lines skipped, as the numbers are read)."""
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        header = [field.strip() for field in next(reader)]
        index = header.index(name)
        return [row[index].strip() for row in reader if any(f.strip() for f in row)]


def _has_rows(path, skip):
    with open(path, encoding="utf-8-sig") as file:
        return any(line.strip() for line in itertools.islice(file, skip, None))


def _csv_problem(path, skip, ignored=None):
    """The first ragged or non-numeric line of a CSV file (but for the column
    ``ignored``), described."""
    expected = None
    with open(path, encoding="utf-8-sig") as file:
        for number, line in enumerate(file, start=1):
            if number <= skip or not line.strip():
                continue
            fields = line.rstrip("\r\n").split(",")
            if expected is None:
                expected = len(fields)
            elif len(fields) != expected:
                return (
                    f"{path}, line {number}: {len(fields)} fields where the rows "
                    f"above have {expected}"
                )
            for field in (f for i, f in enumerate(fields) if i != ignored):
                try:
                    float(field)
                except ValueError:
                    return (
                        f"{path}, line {number}: {field.strip()!r} is not a number"
                        + _separator_hint(fields)
                    )
    return None


def _separator_hint(fields):
    """Why a line may be one field: another separator than the comma."""
    if len(fields) == 1 and not _number(fields[0]):
        for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if separator in fields[0]:
                return (
                    f"; the rows seem separated by {name}, and only commas are read "
                    "(with '.' as the decimal point): save the file as comma-separated "
                    "values"
                )
    return ""

