"""The project stands alone: its citations lead to its own theory page."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.rst"
SKIP_DIRS = {".git", ".venv", "_build", "auto_examples", "generated", "build", "dist"}
TEXT_SUFFIXES = {".py", ".md", ".rst", ".sh", ".toml", ".cfg", ".txt", ".c", ".cff"}

pytestmark = pytest.mark.skipif(
    not THEORY.is_file(), reason="needs a source checkout with docs/"
)


def _project_files():
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        # Any virtual environment (.venv, CI's .venv-min) holds other projects.
        if (
            parts & SKIP_DIRS
            or any(p.endswith(".egg-info") or p.startswith(".venv") for p in parts)
        ):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name == "run"):
            yield path


def _theory_sections():
    text = THEORY.read_text()
    labels = set(re.findall(r"^\.\. _(theory[\w-]*):", text, re.M))
    titles = set(re.findall(r"^(\S.*)\n[-=]{3,}$", text, re.M))
    return labels, titles


def test_no_citation_of_a_file_outside_the_project():
    # The team-internal notes' name, spelled so that this file does not match;
    # as a word, so that a longer identifier containing it is not taken for it.
    name = re.compile(r"\b" + "REFER" + r"ENCE\b")
    offenders = [
        str(path.relative_to(ROOT))
        for path in _project_files()
        if name.search(path.read_text(errors="replace"))
    ]
    assert offenders == []


def test_every_theory_citation_names_a_section_of_the_page():
    labels, titles = _theory_sections()
    cited_labels, cited_titles = set(), set()
    for path in _project_files():
        # A citation may wrap: "docs/theory.rst,\n# "The start"".
        text = re.sub(r"\s*\n\s*(#\s*)?", " ", path.read_text(errors="replace"))
        cited_labels |= set(re.findall(r":ref:`(theory[\w-]*)`", text))
        for match in re.finditer(r'docs/theory\.rst\)?, ((?:"[^"]+"(?: and )?)+)', text):
            cited_titles |= set(re.findall(r'"([^"]+)"', match.group(1)))
    assert cited_labels and cited_titles  # the test looks where the citations are
    assert cited_labels <= labels
    assert {t for t in cited_titles if not any(s.startswith(t) for s in titles)} == set()


def test_theory_page_is_in_the_toctree():
    index = (ROOT / "docs" / "index.rst").read_text()
    assert re.search(r"^\s+theory$", index, re.M)


@pytest.mark.parametrize("page", ["README.md", "docs/user_guide.rst"])
def test_readme_and_user_guide_say_to_standardize_with_a_pipeline(page):
    text = (ROOT / page).read_text()
    assert "make_pipeline(StandardScaler(), ReLURegressor(" in text
    assert "ConvergenceWarning" in text


def test_cli_page_documents_every_command_and_the_safe_format():
    index = (ROOT / "docs" / "index.rst").read_text()
    assert re.search(r"^\s+cli$", index, re.M)
    page = (ROOT / "docs" / "cli.rst").read_text()
    from sklearn_relu._cli import COMMANDS

    for command in COMMANDS:
        assert f"sklearn_relu {command}" in page or f"{command} " in page
    assert "Safe for files from" in page and "load only files you made" in page


def test_wording_says_share_of_float64_not_times_fewer():
    # "0.92 times fewer" reads as a saving where there is none: say
    # "% of float64" or "n times the bytes".
    pattern = re.compile(r"\d(\.\d+)?x " + "fewer")
    for path in _project_files():
        assert not pattern.search(path.read_text(errors="replace")), path


def _literal_python_blocks(text):
    """The ``::`` literal blocks of a reST page that start with an import: the
    snippets a reader copies whole."""
    blocks = []
    for match in re.finditer(r"::\n\n((?:[ ]{4,}.*\n|\n)+)", text):
        lines = match.group(1).rstrip().splitlines()
        indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
        code = "\n".join(line[indent:] for line in lines)
        if re.match(r"(import|from) \w", code):
            blocks.append(code)
    return blocks


def _unbound_names(code):
    """Names a snippet reads but never binds (imports, assignments, defs,
    arguments, loop and comprehension targets) and are not builtins."""
    import ast
    import builtins

    tree = ast.parse(code)
    bound, read = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return read - bound


@pytest.mark.parametrize("page", ["docs/user_guide.rst", "docs/compressors.rst",
                                  "docs/robust.rst", "docs/scaling.rst"])
def test_copied_snippets_name_nothing_they_do_not_import_or_define(page):
    blocks = _literal_python_blocks((ROOT / page).read_text())
    problems = {code.splitlines()[-1]: names for code in blocks
                if (names := _unbound_names(code))}
    assert problems == {}
    if page == "docs/user_guide.rst":
        assert len(blocks) >= 3  # the test finds the snippets


def test_no_page_measures_on_an_unnamed_machine():
    # "measured on this machine" means nothing to a reader elsewhere: name the
    # machine (cores, CPU) and the date where the numbers are given.
    pattern = re.compile(r"\bthis (?:[\w'-]+ )*?machine\b", re.I)
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]
    offenders = {
        str(page.relative_to(ROOT)): found
        for page in pages
        if (found := pattern.findall(re.sub(r"\s+", " ", page.read_text())))
    }
    assert offenders == {}
