"""What others need to depend on the package: a license, a citation, a
changelog, and version floors that CI actually tests."""

import re
import tomllib
from pathlib import Path

import pytest

import sklearn_relu

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not (ROOT / "pyproject.toml").is_file(), reason="needs a source checkout"
)


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_file_matches_the_declared_license():
    project = _pyproject()["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")


def test_citation_and_changelog_name_this_version():
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf'^version: "{re.escape(sklearn_relu.__version__)}"$', citation, re.M)
    assert "Fitting ReLUs via SGD and Quantized SGD" in citation
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {sklearn_relu.__version__}" in changelog


def test_minimum_versions_ci_installs_the_declared_floors():
    # The floors in pyproject.toml are what .ci/run tests against: raising one
    # without the other (or the reverse) fails here.
    floors = {}
    # pyarrow (the parquet extra): the newest needs NumPy 2, the oldest must run.
    project = _pyproject()["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["parquet"]:
        name, _, version = requirement.partition(">=")
        floors[name.strip()] = version.strip()
    pins = dict(
        line.split("==")
        for line in (ROOT / ".ci" / "minimum-versions.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(pins) == set(floors)
    for name, floor in floors.items():
        assert pins[name].split(".")[: len(floor.split("."))] == floor.split("."), name


def test_ci_runs_the_linter_the_build_and_the_minimum_versions():
    script = (ROOT / ".ci" / "run").read_text()
    for step in ("ruff check", "python -m build", "twine check --strict",
                 "minimum-versions.txt", "sphinx-build -W"):
        assert step in script, step
