"""The code base is ruff-clean and keeps its layers (configuration in pyproject.toml)."""

import ast
import shutil
import subprocess
import sys

from daphne_servers import PROJECT_DIR


def tool(name: str) -> str:
    return shutil.which(name) or f"{sys.prefix}/bin/{name}"


def test_ruff_clean():
    result = subprocess.run([tool("ruff"), "check", "."], cwd=PROJECT_DIR, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_linter_contracts_are_kept():
    """The layers of docs/architecture.md, as import-linter contracts in pyproject.toml."""
    result = subprocess.run([tool("lint-imports"), "--no-cache"], cwd=PROJECT_DIR,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


#: Names Django documents as public despite the underscore (``Model._meta``).
DJANGO_PUBLIC = {"_meta"}


def private_uses(source: str) -> list[str]:
    """Private names of our modules used by another module: ``from jupyter_ydjango.x import
    _y``, and ``x._y`` where ``x`` is one of our modules imported here."""
    tree = ast.parse(source)
    ours: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jupyter_ydjango"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                ours.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("jupyter_ydjango"):
                    ours.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in ours and node.attr.startswith("_")
                and not node.attr.startswith("__") and node.attr not in DJANGO_PUBLIC):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_private_uses_are_found():
    assert private_uses("from jupyter_ydjango.rooms.room import _registries\n")
    assert private_uses("from jupyter_ydjango.api import views\nviews._error(1, 'x')\n")
    assert not private_uses("from jupyter_ydjango.api import views\nviews.health\n")


def test_no_module_uses_private_names_of_another():
    offending = {}
    for path in sorted((PROJECT_DIR / "jupyter_ydjango").rglob("*.py")):
        found = private_uses(path.read_text())
        if found:
            offending[str(path.relative_to(PROJECT_DIR))] = found
    assert not offending, offending
