"""The layers: core (no Dagster), definitions (what ``dagster dev`` loads, Dagster's public API only),
hosts (the Celery workers and launcher), execution (``sync``'s runs, the instance), cli; imports point
down only, Dagster's internals are used behind one door (``dagster_internals.py``) that definitions
never open, and the production package never imports the demo or the tests."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mastodon_s3_sync"
LAYERS = ("core", "definitions", "hosts", "execution", "cli")
"""Lowest first: a module may import its own layer and the layers before it (``execution`` follows
runs on the hosts: it reads the launcher's heartbeats)."""
DOOR_MODULE = "mastodon_s3_sync.dagster_internals"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # a submodule, or a name in it
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
    if relative == ("dagster_internals.py",):
        own = 0  # the door stands beside core: it wraps Dagster's internals and imports none of our layers above
    for module in imported_modules(path):
        assert not module.startswith(("mastodon_s3_sync_demo", "mastodon_s3_sync_tests")), module
        layer = layer_of(module)
        assert layer is None or layer <= own, f"{path.name} imports {module}, a layer above it"
        if relative[0] == "core":
            assert module.split(".")[0] not in ("dagster", "dagster_aws", "dagster_postgres"), module
        if relative[0] in ("core", "definitions"):
            assert module != DOOR_MODULE, f"{path.name} imports the door to Dagster's internals"


def module_name(path: Path) -> str:
    return ".".join(("mastodon_s3_sync", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in it: inside functions and under
    ``if TYPE_CHECKING`` too (a cycle hidden there still ties the modules together)."""
    paths = {module_name(path): path for path in MODULES}
    return {name: (imported_modules(path) & paths.keys()) - {name} for name, path in paths.items()}


def a_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (its modules in import order, the first again at the end), or []."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return []
        for imported in sorted(graph[name]):
            cycle = visit(imported, [*path, name])
            if cycle:
                return cycle
        done.add(name)
        return []

    return next((cycle for cycle in (visit(name, []) for name in sorted(graph)) if cycle), [])


def test_no_import_cycle() -> None:
    """Imports form no cycle, hidden or not (settings -> tuning -> planning -> database -> settings was
    one): each module can be read, and loaded, after the ones it imports."""
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check finds one
    assert a_cycle(import_graph()) == []


@pytest.mark.parametrize("leaf", ["mastodon_s3_sync.core.errors", "mastodon_s3_sync.core.tuning"])
def test_leaves_import_nothing_of_the_package(leaf: str) -> None:
    """The error types and the tuning knobs are plain: every module may import them."""
    assert import_graph()[leaf] == set()


def test_core_loads_without_dagster() -> None:
    core_modules = [module_name(p) for p in sorted((PACKAGE / "core").rglob("*.py")) if p.name != "__init__.py"]
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
    for every dagster-aws component (definitions/resources.py says why and what it saves)."""
    script = (
        "import sys, mastodon_s3_sync.definitions.definitions as d\n"
        "d.build_definitions()\n"
        "print(sorted(m for m in sys.modules if m.startswith('dagster_aws.') and 'components' in m))\n"
        "print('dagster_aws.s3.resources' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "True"]


DOOR = PACKAGE / "dagster_internals.py"
DEMO = PACKAGE.parent / "demo" / "mastodon_s3_sync_demo"
PRODUCT = sorted(path for path in [*MODULES, *DEMO.rglob("*.py")] if path != DOOR and path.name != "__main__.py")
"""Every module of the product but the door (``__main__`` runs the command line when imported)."""


def is_dagster(module: str) -> bool:
    root = module.split(".")[0]
    return root == "dagster" or root.startswith("dagster_")


def private_dagster_uses(tree: ast.AST) -> list[str]:
    """``dagster._*`` (and dagster-*'s private names) imported, reached as attributes or named in a
    string (an instance override's ``module``), each as ``line N: what``."""
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if is_dagster(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and is_dagster(node.module):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = [f"{node.value.id}.{node.attr}"] if node.value.id == "dagster" else []
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value] if node.value.startswith(("dagster._", "dagster.core.")) else []
        found += [
            f"line {node.lineno}: {name}"
            for name in names
            if any(part.startswith("_") for part in name.split(".")) or name.startswith("dagster.core.")
        ]
    return found


def private_overrides(path: Path, tree: ast.AST) -> list[str]:
    """``def _name`` in a class whose Dagster base class (any in its bases' MROs) defines ``_name``."""
    module = importlib.import_module(module_name(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        try:
            bases = [eval(ast.unparse(base), vars(module)) for base in node.bases]  # noqa: S307 - our own source
        except NameError as error:  # a base defined inside a function: not checked, so reported
            found.append(f"line {node.lineno}: {node.name}'s bases are not module-level names ({error})")
            continue
        dagster_classes = [cls for base in bases for cls in getattr(base, "__mro__", ()) if is_dagster(cls.__module__)]
        for item in node.body:
            name = getattr(item, "name", "")
            if (
                isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and name.startswith("_")
                and not name.endswith("__")
            ):
                overridden = [cls.__qualname__ for cls in dagster_classes if name in vars(cls)]
                if overridden:
                    found.append(f"line {item.lineno}: {node.name}.{name} overrides {overridden[0]}.{name}")
    return found


@pytest.mark.parametrize("path", PRODUCT, ids=[str(p.relative_to(PACKAGE.parent)) for p in PRODUCT])
def test_dagster_internals_only_behind_the_door(path: Path) -> None:
    """Only dagster_internals.py imports ``dagster._*`` or overrides a private method of a
    Dagster class: a Dagster upgrade breaks, if anything, what is there (``make dagster-upgrade-check``)."""
    tree = ast.parse(path.read_text())
    uses = private_dagster_uses(tree)
    if path.is_relative_to(PACKAGE):
        uses += private_overrides(path, tree)
    assert uses == [], f"{path.name}: move these into {DOOR.name}: {uses}"


def test_the_door_sees_what_it_guards() -> None:
    """The checks above find each kind of use in the door itself."""
    tree = ast.parse(DOOR.read_text())
    uses = private_dagster_uses(tree)
    assert any("dagster._core.storage.tags.PARTITION_NAME_TAG" in use for use in uses), uses
    assert any("dagster_celery.launcher._get_run_priority" in use for use in uses), uses
    assert any("dagster.core.storage.noop_compute_log_manager" in use for use in uses), uses
    overrides = private_overrides(DOOR, tree)
    assert any("ReusingSqliteEventLogStorage._connect overrides SqliteEventLogStorage._connect" in o for o in overrides)
    assert any("ReusingSqliteEventLogStorage._initdb overrides" in o for o in overrides), overrides
