"""What a stranger installs: the extras the tutorials need, the notebooks' pinned install, the built wheel."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; on 3.10 these checks run in the other CI jobs

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distributions_of(extra: str) -> set[str]:
    """Every distribution that ``pip install "cnn-study[extra]"`` asks for by name: the dependencies, and the
    extra's requirements with the package's own extras (``cnn-study[offline,explain]``) followed."""
    distributions, extras, seen = (
        {_canonical(re.split(r"[<>=!~ ;\[]", r)[0]) for r in PROJECT["dependencies"]},
        [extra],
        set(),
    )
    while extras:
        current = extras.pop()
        seen.add(current)
        for requirement in PROJECT["optional-dependencies"][current]:
            name, _, own = re.match(r"([A-Za-z0-9_.-]+)(\[([^\]]*)\])?", requirement).groups()
            if _canonical(name) == "cnn-study":
                extras += [part for part in own.split(",") if part not in seen]
            else:
                distributions.add(_canonical(name))
    return distributions


def _imported(paths: list[Path]) -> set[str]:
    """The top-level modules that ``paths`` import (at any depth: lazy imports too), standard library left out."""
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"__future__", "cnn_study"}


def test_the_tutorials_extra_brings_every_module_the_tutorials_and_the_package_import() -> None:
    sources = sorted((ROOT / "tutorials").glob("*.py")) + sorted((ROOT / "cnn_study").rglob("*.py"))
    providers = importlib.metadata.packages_distributions()  # module -> the installed distributions with it
    needed = {module: _canonical(providers[module][0]) for module in _imported(sources)}
    assert {"sklearn", "captum", "IPython", "efficientnet_lite_pytorch"} <= needed.keys()  # what the reader sees
    brought = _distributions_of("tutorials")
    assert {module: name for module, name in needed.items() if name not in brought} == {}


def test_the_docs_build_installs_the_tutorials_extra_as_the_workflow_does() -> None:
    assert _distributions_of("tutorials") <= _distributions_of("docs")
    assert "cnn-study[tutorials]" in PROJECT["optional-dependencies"]["docs"]
    workflow = (ROOT / ".github" / "workflows" / "docs.yml").read_text()
    assert re.search(r'^\s+run: pip install -e "\.\[docs\]"$', workflow, re.M)


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("version", "requirement"),
    [
        ("0.2.0", "cnn-study[tutorials]==0.2.0"),
        ("1.0rc1", "cnn-study[tutorials]==1.0rc1"),
        ("dev", "cnn-study[tutorials] @ git+https://github.com/cnn-study/cnn-study@main"),
    ],
)
def test_a_notebook_installs_the_version_of_the_site_it_comes_from(version, requirement) -> None:
    assert _hooks().install_requirement(version, PROJECT["urls"]["Source"] + "/") == requirement


def test_the_version_lives_in_one_place() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cnn_study.__version__"}
    import cnn_study

    assert importlib.metadata.version("cnn-study") == cnn_study.__version__
    assert "## Unreleased" in (ROOT / "CHANGELOG.md").read_text()


@pytest.mark.slow
def test_the_built_wheel_works_from_a_fresh_environment_and_the_sdist_holds_the_tests(
    data_dir, wheel_environment, tmp_path
) -> None:
    wheel, sdist, python = wheel_environment.wheel, wheel_environment.sdist, wheel_environment.python
    subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, (wheel, sdist))], check=True)
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "tests/test_release.py", "tutorials/01_mnist_cnn.py"} <= names

    env = {**os.environ, "CNN_STUDY_DATA": str(data_dir), "MPLBACKEND": "Agg"}
    check = [str(python), str(ROOT / "scripts" / "check_wheel.py"), str(wheel)]
    completed = subprocess.run(check, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    print(completed.stdout)  # the wheel's size and the shipped weight's accuracy, for the record
