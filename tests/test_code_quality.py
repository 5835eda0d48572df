"""The code's house rules: formatted and linted by ruff, and no private name used across modules."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Code outside the package may use its public API only (as torchvision's references/ do).
OUTSIDE = ("scripts", "tutorials", "benchmarks", "docs")


def _python_files() -> list[Path]:
    folders = ("cnn_study", *OUTSIDE)
    return sorted({path.resolve() for folder in folders for path in (ROOT / folder).rglob("*.py")})


def _package(path: Path) -> str:
    """The package a file belongs to, e.g. ``cnn_study.models`` for ``cnn_study/models/lenet5.py``."""
    return ".".join(path.resolve().relative_to(ROOT).parent.parts)


def _private_imports(source: str, package: str, where: str = "") -> list[str]:
    """Imports of a private module from outside the package that holds it, and of private names of cnn_study.

    ``from cnn_study.models._registry import X`` is fine inside ``cnn_study.models`` (torchvision's
    ``_api`` is private to ``torchvision.models`` in the same way) and not anywhere else.
    """
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            target, names = None, [alias.name for alias in node.names]
        else:
            continue
        for name in names if target is None else [target]:
            parts = name.split(".")
            for depth, part in enumerate(parts):
                owner = ".".join(parts[:depth])
                if part.startswith("_") and not part.startswith("__") and not (package + ".").startswith(owner + "."):
                    problems.append(f"{where}:{node.lineno} imports {name}")
        if target is not None and target.startswith("cnn_study"):
            problems += [
                f"{where}:{node.lineno} imports the private {name} from {target}"
                for name in names
                if name.startswith("_") and not name.startswith("__")
            ]
    return problems


def test_no_private_name_is_imported_across_modules() -> None:
    problems = []
    for path in _python_files():
        problems += _private_imports(path.read_text(), _package(path), str(path.relative_to(ROOT)))
    assert not problems, "\n".join(problems)


def test_the_rule_tells_private_from_public() -> None:
    assert _private_imports("from cnn_study.files import atomic_json_dump", "scripts") == []
    assert len(_private_imports("from cnn_study.experiments import _load_data", "scripts")) == 1
    assert len(_private_imports("from cnn_study.models._registry import WEIGHTS_DIR", "cnn_study")) == 1
    assert len(_private_imports("import cnn_study.models._registry", "scripts")) == 1
    assert _private_imports("from ._registry import WEIGHTS_DIR", "cnn_study.models") == []
    assert _private_imports("from .._messages import option", "cnn_study.datasets") == []


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the dev extras")
@pytest.mark.parametrize("command", [["ruff", "format", "--check", "."], ["ruff", "check", "."]])
def test_ruff_is_clean(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_formatter_is_fought() -> None:
    files = [*_python_files(), *(ROOT / "tests").glob("*.py")]
    markers = ("fmt: " + "skip", "fmt: " + "off")
    marked = [str(path) for path in files if any(marker in path.read_text() for marker in markers)]
    assert not marked
