"""examples/robust_study.py end to end: on a tiny grid it writes the tables,
the heatmaps and the targets where it is told to, and a second run reads the
fits back instead of fitting again; the mean's breaking, at the study's size,
is a slow test."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_study(out_dir, *arguments):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "robust_study.py"), *arguments,
         "--out-dir", str(out_dir)],
        capture_output=True, text=True, timeout=600, cwd=EXAMPLES.parent,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_study_writes_its_tables_heatmaps_and_targets(tmp_path):
    tiny = ["--n-samples", "1600", "--epochs", "1", "--alpha", "inf", "1",
            "--aggregators", "mean", "geometric_median", "nnm+geometric_median@0.9",
            "bucketing+geometric_median", "--attacks", "alie", "label_flip",
            "--grid", "0", "1"]
    printed = run_study(tmp_path, *tiny, "--f", "2", "3", "--n-jobs", "2")
    # 2 f x 2 alpha x 4 defences x (no attack + 2 attacks)
    assert "0 cells read" in printed and "48 to fit" in printed
    table = (tmp_path / "robust_study.md").read_text()
    assert ("| alpha | f | aggregation | none | alie | label_flip | worst | worst attack "
            "| worst/none |") in table
    assert table.count("| 3 | nnm+geometric_median, momentum 0.9 |") == 2
    # Bucketing's 5 buckets withstand 2 Byzantine workers, not 3: no values.
    assert "| inf | 3 | bucketing+geometric_median | - | - | - | - |  | - |" in table
    assert "| inf | 2 | bucketing+geometric_median | 0." in table
    assert "- i.i.d., f = 3: the best defence, " in table
    assert "- alpha = 1, f = 3: the best defence, " in table
    assert "the plain geometric_median: worst case" in table
    assert "the mean under label_flip" in table
    for figure in ("robust_study.png", "robust_study_f.png"):
        assert (tmp_path / figure).stat().st_size > 1000
    with open(tmp_path / "robust_study.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["alpha", "f", "aggregation", "none", "alie", "label_flip", "worst",
                       "worst attack", "worst/none"]
    assert len(rows) == 1 + 16
    with open(tmp_path / "robust_study_worst.csv", newline="") as handle:
        worst = list(csv.reader(handle))
    assert worst[0][:4] == ["defence", "alpha = inf: none", "alpha = inf: worst (attack)",
                            "alpha = inf: worst/none"]
    assert [row[0] for row in worst[1:]] == ["mean", "geometric_median",
                                             "nnm+geometric_median, momentum 0.9",
                                             "bucketing+geometric_median"]
    assert len((tmp_path / "robust_study.jsonl").read_text().splitlines()) == 48

    # Again, one f fewer: every fit is read back, and the tables are the f = 3 part.
    printed = run_study(tmp_path, *tiny, "--f", "3")
    assert "48 cells read" in printed and "0 to fit" in printed
    assert (tmp_path / "robust_study.md").read_text().count("| 2 | ") == 0
    assert len((tmp_path / "robust_study.jsonl").read_text().splitlines()) == 48

    # --no-fit writes what the file holds: a defence not fitted yet is blank.
    printed = run_study(tmp_path, *tiny[:7], *tiny[-3:], "--aggregators", "mean", "median",
                        "--attacks", "alie", "label_flip", "--f", "3", "--no-fit")
    assert "6 to fit" in printed
    table = (tmp_path / "robust_study.md").read_text()
    assert "| inf | 3 | median |  |  |  |  |  |  |" in table
    assert "| inf | 3 | mean | 0." in table


@pytest.mark.slow
def test_the_mean_breaks_under_label_flipping_and_optimal_alie(tmp_path):
    # The study's size, i.i.d. shards, f = 3: the target for the mean
    # (error above 0.5 or divergence), deterministic given the seed.
    run_study(tmp_path, "--f", "3", "--alpha", "inf", "--aggregators", "mean",
              "geometric_median", "--attacks", "label_flip", "optimal_alie")
    table = (tmp_path / "robust_study.md").read_text()
    assert "- alpha = inf, f = 3: the mean under label_flip" in table
    assert "(target: breaks, error > 0.5 or divergence: met)" in table
