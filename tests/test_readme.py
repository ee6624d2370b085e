"""The README's code runs as written, after its set-up line.

The set-up line (``python3 -m venv .venv && .venv/bin/pip install -e ...``)
leaves the environment unactivated, so every command must name ``.venv/bin/``.
Here ``.venv/bin/`` stands for the environment running the tests.
"""

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
#: The README is a front page; the long explanations and the benchmark text
#: live in docs/.
MAX_README_BYTES = 12_000

pytestmark = [
    pytest.mark.skipif(not README.is_file(), reason="needs a source checkout"),
]
needs_mpiexec = pytest.mark.skipif(
    not os.environ.get("SKLEARN_RELU_REQUIRE_MPI") and not (BIN / "mpiexec").is_file(),
    reason="no mpiexec here",
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


@needs_mpiexec
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


@needs_mpiexec
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


def test_readme_is_a_short_front_page():
    assert len(README.read_bytes()) <= MAX_README_BYTES


def _scripts():
    """The README's python blocks that run with plain ``python``: all but those
    whose first line names their own command ("run with: ...mpiexec...", run by
    test_mpi_script_runs_as_written)."""
    return [b for b in _blocks("python") if "run with:" not in b.splitlines()[0]]


def _missing_modules(code):
    """Top-level modules a block imports that are not installed here."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


@pytest.mark.parametrize(
    "code", _scripts() if README.is_file() else [], ids=lambda code: code.splitlines()[-1][:40]
)
def test_python_block_runs_alone_as_a_script(code, tmp_path):
    """Each python block is pasted alone into a script and run in a fresh
    interpreter, so a reader can copy any one of them: none may use a name
    from the block before it. A block that starts worker processes (loky, Dask)
    must work from a script, where the processes import it again (the
    ``__main__`` guard). Only a block whose extra is not installed here is
    skipped; with the test extra (as CI installs it) none is."""
    missing = _missing_modules(code)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (an extra not installed here)")
    (tmp_path / "block.py").write_text(code)
    done = subprocess.run(
        [sys.executable, "block.py"], cwd=tmp_path, capture_output=True, text=True,
        timeout=600, env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The blocks print what their comments promise; a comparison that prints
    # False (two backends disagreeing, a callback that did not stop) is a failure.
    assert "False" not in done.stdout, done.stdout[-2000:]


def test_every_python_block_is_run_by_a_test():
    blocks = _blocks("python")
    assert len(_scripts()) >= 4
    assert len(blocks) == len(_scripts()) + 1  # the one MPI script
