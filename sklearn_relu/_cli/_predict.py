"""``predict``: a saved model's predictions for a data file, as CSV."""

import argparse
import csv
import sys
import warnings
from pathlib import Path

from . import _data
from ._output import check_writable


def add_predict(subparsers):
    """Add the ``predict`` command's parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "predict",
        help="predict with a saved model, writing a CSV of predictions",
        description="Load a model written by 'fit' and write its predictions for "
        "DATA (.npz with X, .npy, .csv or Parquet; a .csv or Parquet file may be "
        "the training file: its target column is dropped) as CSV to --out "
        "(default: standard output, for a pipe), one per row under the header "
        "'prediction'. A .skops model is checked before loading: types beyond "
        "scikit-learn's, NumPy's and this package's are refused unless named "
        "with --trust. A .joblib/.pkl model is unpickled, which can run code: load only your own.",
    )
    parser.add_argument("model", help="the model file (.skops, or .joblib/.pkl)")
    parser.add_argument(
        "data", help="the rows to predict: .npz (X), .npy, .csv or Parquet (as for fit)"
    )
    parser.add_argument(
        "--out", default="-",
        help="the CSV file to write; '-' (the default): standard output",
    )
    parser.add_argument(
        "--float-format", default="%.9g", type=_float_format, metavar="FORMAT",
        help="how each prediction is written, a %%-format (default %%.9g: float32 "
        "exactly, float64 to 1e-9; %%.17g writes float64 exactly)",
    )
    parser.add_argument(
        "--id-column", metavar="NAME",
        help="a .csv or Parquet column (by its name) of row ids, not a feature: "
        "written as the output's first column, as it reads",
    )
    parser.add_argument(
        "--target-column",
        metavar="NAME|INDEX",
        help="the .csv or Parquet target column to drop, when it has one "
        "(default: last)",
    )
    parser.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="TYPE",
        help="a type name to trust in a .skops file (repeatable)",
    )
    parser.set_defaults(run=_run_predict)


def _float_format(text):
    """A %-format that writes one float, such as %.9g."""
    try:
        written = text % 1.5
    except (TypeError, ValueError):
        written = None
    if not isinstance(written, str) or "1" not in written:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a %-format for one number, such as %.9g or %.6f"
        )
    return text


def _run_predict(args):
    """Run ``predict`` with the parsed ``args``; returns the exit status."""
    from .._persist import load_model

    model = load_model(args.model, trusted=args.trust)
    X, names, by_name = _data.read_features(
        args.data,
        model.n_features_in_,
        getattr(model, "feature_names_in_", None),
        args.target_column,
        ignore=args.id_column,
    )
    ids = None if args.id_column is None else _data.read_ids(args.data, args.id_column)
    X = _data.with_names(X, names)
    with warnings.catch_warnings():
        if by_name:
            # Without pandas X is an array, but its columns were picked by the
            # model's own names above: scikit-learn's warning would be wrong.
            warnings.filterwarnings(
                "ignore", message="X does not have valid feature names",
                category=UserWarning,
            )
        predictions = model.predict(X)
    if args.out == "-":
        _write_predictions(sys.stdout, predictions, args.float_format, args.id_column, ids)
        sys.stdout.flush()
        return 0
    out = Path(args.out)
    check_writable(out)
    with open(out, "w", newline="") as file:
        _write_predictions(file, predictions, args.float_format, args.id_column, ids)
    print(f"{predictions.shape[0]} predictions written to {out}")
    return 0


def _write_predictions(file, predictions, float_format, id_name, ids):
    """The CSV of predictions: a header, then a row per prediction, after its
    id when there are ids."""
    if ids is not None and len(ids) != len(predictions):
        raise ValueError(
            f"the id column {id_name!r} has {len(ids)} fields for {len(predictions)} rows"
        )
    writer = csv.writer(file, lineterminator="\n")
    writer.writerow(["prediction"] if id_name is None else [id_name, "prediction"])
    values = (float_format % value for value in predictions)
    rows = ([v] for v in values) if ids is None else zip(ids, values)
    writer.writerows(rows)
