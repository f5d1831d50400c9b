"""Each app imports only downward, so that the folders show the product's parts stacked: core (what every app shares),
catalog (inventories, Runs, images), classifier (models and tagging), notifications, reviews (review, the portal and
the loop), and benchmarks (the measuring commands, which load every app's work together). `config` is the project
(settings, URLs, the error handlers, the command base): every app may use it. A package's `__main__.py` is a program
(`python -m catalog.inventory_server`), imported by nothing: it may use any app."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["core", "catalog", "classifier", "notifications", "reviews", "benchmarks"]


def imported_apps(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(LAYERS)


def test_every_app_imports_only_the_apps_below_it():
    upward = []
    for level, app in enumerate(LAYERS):
        above = set(LAYERS[level + 1 :])
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts or path.name == "__main__.py":
                continue
            upward += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(imported_apps(path) & above)]
    assert upward == []


def test_the_layers_are_every_app():
    apps = {path.parent.name for path in ROOT.glob("*/apps.py")}
    assert apps == set(LAYERS) - {"core"}
