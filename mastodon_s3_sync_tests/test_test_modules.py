"""Test modules share helpers through ``support/`` only: none imports from ``conftest`` or from
another test module (a helper there is found by nobody and imported by accident)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return names | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}


def test_no_test_module_imports_conftest_or_another_test_module() -> None:
    wrong = {
        f"{path.name} imports {module}"
        for path in sorted([*TESTS.glob("*.py"), *TESTS.glob("support/*.py")])
        for module in imported_modules(path)
        if module.startswith(f"{TESTS.name}.") and module.split(".")[1].startswith(("conftest", "test_"))
    }
    assert wrong == set()
