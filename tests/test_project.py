"""The project's own files agree: one documentation address, workflows GitHub accepts, the README's commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; on 3.10 these checks run in the other CI jobs

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_pyproject_mkdocs_and_readme_name_one_documentation_url() -> None:
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Documentation"]
    mkdocs = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert mkdocs["site_url"] == url
    assert url in (ROOT / "README.md").read_text()
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Source"]
    assert mkdocs["repo_url"] == repository and mkdocs["edit_uri"] == "edit/main/docs/"


def test_there_are_a_ci_a_docs_and_a_release_workflow() -> None:
    assert {path.name for path in WORKFLOWS} == {"ci.yml", "docs.yml", "release.yml"}
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert ci["jobs"]["test"]["strategy"]["matrix"]["python-version"] == ["3.10", "3.11", "3.12"]
    readme_test_command = re.search(r"^(pip install -e \".\[dev\]\" && python -m pytest)$", _readme(), re.M)
    assert readme_test_command
    assert any(step.get("run") == readme_test_command.group(1) for step in ci["jobs"]["test"]["steps"])
    docs = (ROOT / ".github" / "workflows" / "docs.yml").read_text()
    assert "mike deploy --push" in docs and "--alias-type=copy" in docs  # Colab cannot follow symlinks
    assert yaml.safe_load(docs)[True]["push"]["tags"] == ["v*"]  # a release publishes its version of the site
    release = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    assert release[True] == {"push": {"tags": ["v*"]}}  # YAML reads the key `on` as True
    build = "\n".join(step.get("run", "") for step in release["jobs"]["build"]["steps"])
    assert "python -m build" in build and "twine check --strict dist/*" in build
    assert "scripts/check_wheel.py" in build and "--download" in build  # the wheel tested in a fresh environment
    publish = release["jobs"]["publish"]
    assert publish["needs"] == "build" and publish["permissions"] == {"id-token": "write"}  # trusted publishing
    assert publish["steps"][-1]["uses"] == "pypa/gh-action-pypi-publish@release/v1"


@pytest.mark.skipif(shutil.which("check-jsonschema") is None, reason="check-jsonschema is in the dev extras")
def test_the_workflows_validate_against_github_schema() -> None:
    command = ["check-jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)]
    completed = subprocess.run(command, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def _readme() -> str:
    return (ROOT / "README.md").read_text()
