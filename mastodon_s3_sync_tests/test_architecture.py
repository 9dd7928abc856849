"""The layers: core (no Dagster), orchestration (the Dagster wiring), cli; imports point down only,
and the production package never imports the demo or the tests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mastodon_s3_sync"
LAYERS = ("core", "orchestration", "cli")
"""Lowest first: a module may import its own layer and the layers before it."""


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "mastodon_s3_sync" or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_imports_point_down(path: Path) -> None:
    relative = path.relative_to(PACKAGE).parts
    own = LAYERS.index(relative[0]) if relative[0] in LAYERS else len(LAYERS)
    for module in imported_modules(path):
        assert not module.startswith(("mastodon_s3_sync_demo", "mastodon_s3_sync_tests")), module
        layer = layer_of(module)
        assert layer is None or layer <= own, f"{path.name} imports {module}, a layer above it"
        if relative[0] == "core":
            assert module.split(".")[0] not in ("dagster", "dagster_aws", "dagster_postgres"), module


def test_core_loads_without_dagster() -> None:
    core_modules = [
        ".".join(("mastodon_s3_sync", *p.relative_to(PACKAGE).with_suffix("").parts))
        for p in sorted((PACKAGE / "core").rglob("*.py"))
        if p.name != "__init__.py"
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {core_modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'dagster_aws')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_definitions_skip_dagster_aws_components() -> None:
    """The bucket resources are dagster-aws S3Resources, but loading the definitions must not pay
    for every dagster-aws component (orchestration/resources.py says why and what it saves)."""
    script = (
        "import sys, mastodon_s3_sync.orchestration.definitions as d\n"
        "d.build_definitions()\n"
        "print(sorted(m for m in sys.modules if m.startswith('dagster_aws.') and 'components' in m))\n"
        "print('dagster_aws.s3.resources' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "True"]
