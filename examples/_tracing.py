"""What the paper reproductions share (not an example of its own): the error
curve of a fit, recorded by ``ReLURegressor``'s ``callback``, its tables, and
where they are written."""

import csv
from pathlib import Path

import numpy as np

#: The figures and tables the docs show, committed with the repository: only
#: ``--update-docs`` writes here.
DOCS_FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
#: Where a run writes otherwise, in the current directory (git-ignored).
DEFAULT_OUT_DIR = Path("reproduce_output")


def add_output_arguments(parser):
    """``--out-dir DIR`` (default ``./reproduce_output``) or ``--update-docs``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR,
        help=f"where to write the figures and tables (default ./{DEFAULT_OUT_DIR})",
    )
    where.add_argument(
        "--update-docs", action="store_true",
        help="write them into docs/figures instead, replacing the ones the docs show",
    )


def chosen_out_dir(args):
    """The directory :func:`add_output_arguments`' flags chose."""
    return DOCS_FIGURES if args.update_docs else args.out_dir


class ErrorTrace:
    """``ReLURegressor(callback=ErrorTrace(w_star, n_steps))``.

    Records the relative error ``||w_t - w*|| / ||w*||`` of the coefficients at
    the start of the fit and after every step (of the first run), and stops
    the fit after ``n_steps`` steps: ``errors[t]`` is the error after step
    ``t``.
    """

    def __init__(self, w_star, n_steps):
        self.w_star = np.asarray(w_star)
        self.n_steps = n_steps
        self.errors = []

    def __call__(self, info):
        coef = info.params[: self.w_star.shape[0]]
        self.errors.append(
            float(np.linalg.norm(coef - self.w_star) / np.linalg.norm(self.w_star))
        )
        return info.step >= self.n_steps


def first_reaching(errors, target):
    """First step whose error is at most ``target``, or None."""
    hits = np.flatnonzero(np.asarray(errors) <= target)
    return int(hits[0]) if hits.size else None


def write_table(rows, stem):
    """Write ``rows`` (a list of dicts) as ``stem.csv`` and a markdown ``stem.md``."""
    header = list(rows[0])
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[k]) for k in header) + " |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
