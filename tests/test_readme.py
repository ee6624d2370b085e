"""The README's MPI and command-line lines run as written, after its set-up line.

The set-up line (``python3 -m venv .venv && .venv/bin/pip install -e ...``)
leaves the environment unactivated, so every command must name ``.venv/bin/``.
Here ``.venv/bin/`` stands for the environment running the tests.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.skipif(not README.is_file(), reason="needs a source checkout"),
]
if not os.environ.get("SKLEARN_RELU_REQUIRE_MPI"):
    pytestmark.append(
        pytest.mark.skipif(not (BIN / "mpiexec").is_file(), reason="no mpiexec here")
    )


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def _commands():
    """The README's shell commands after the set-up lines, joined across the
    continuation of a quoted argument, comments dropped."""
    commands = []
    for block in _blocks("bash"):
        text = block
        for command in re.split(r"\n(?=\.venv/bin/|python|sudo|#)", text):
            if command.startswith(".venv/bin/"):
                commands.append(re.sub(r"\s+#[^\"']*$", "", command.strip()))
    return commands


def _run(command, cwd):
    command = command.replace(".venv/bin/", f"{BIN}/")
    return subprocess.run(
        command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_every_command_names_the_environment():
    # A bare "mpiexec" or "python" fails after the set-up line: the venv is
    # never activated.
    for block in _blocks("bash"):
        for line in block.splitlines():
            assert not re.match(r"(mpiexec|python) ", line), line
            if line.startswith("sudo "):  # root's PATH has no venv either
                assert 'PYTHON="$PWD/.venv/bin/python"' in line, line
    first_lines = [b.splitlines()[0] for b in _blocks("python")]
    for line in first_lines:
        if "run with:" in line:
            assert ".venv/bin/mpiexec" in line and ".venv/bin/python" in line


def test_command_line_block_runs_as_written(tmp_path):
    commands = [c for c in _commands() if "sklearn_relu" in c or "np.savez" in c]
    assert any("mpiexec" in c for c in commands)
    assert any(" predict " in c for c in commands)
    for command in commands:
        done = _run(command, tmp_path)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert (tmp_path / "model.skops").is_file()
    lines = (tmp_path / "predictions.csv").read_text().splitlines()
    assert lines[0] == "prediction" and len(lines) == 2001


def test_mpi_script_runs_as_written(tmp_path):
    (script,) = [b for b in _blocks("python") if b.startswith("# fit_mpi.py")]
    command = re.match(r"# fit_mpi\.py -- run with: (.*)", script).group(1)
    (tmp_path / "fit_mpi.py").write_text(script)
    done = _run(command, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # Rank 0 prints the record (every rank holds the same model): 4 workers'
    # messages each step.
    assert done.stdout.count("CommunicationRecord(") == 1
    n_messages = int(done.stdout.split("n_messages=")[1].split(",")[0])
    assert n_messages > 0 and n_messages % 4 == 0
