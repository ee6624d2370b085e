"""examples/robust_study.py end to end on a tiny grid: it writes the table, the
heatmap and the targets where it is told to."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_study_writes_its_table_heatmap_and_targets(tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "robust_study.py"), "--n-samples", "1600",
         "--epochs", "1", "--f", "3", "--alpha", "inf", "1",
         "--aggregators", "mean", "geometric_median", "--attacks", "alie", "label_flip",
         "--grid", "0", "1", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=EXAMPLES.parent,
    )
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "robust_study.md").read_text()
    assert "| alpha | f | aggregation | none | alie | label_flip | worst |" in table
    assert table.count("| 3 | geometric_median |") == 2
    assert "- i.i.d., f = 3: the best defence, geometric_median" in table
    assert "the mean under label_flip" in table
    assert (tmp_path / "robust_study.png").stat().st_size > 1000
    rows = (tmp_path / "robust_study.csv").read_text().splitlines()
    assert rows[0].startswith("alpha,f,aggregation,none,alie,label_flip,worst")
    assert len(rows) == 5
