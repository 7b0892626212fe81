"""The domain core stays engine-free: `dedup` never imports pyspark or ray at module level,
and never imports `pipelines`; the review service's operations speak no HTTP."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import dedup

ENGINES = ("pyspark", "ray", "delta")
ROOT = Path(dedup.__file__).parent


def imported(nodes: Iterable[ast.AST]) -> set[str]:
    """The top-level packages named by the import statements among ``nodes``."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # Only statements at module level, including those under `if` and `try`.
    return imported(
        child
        for node in tree.body
        for child in (ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node])
    )


def test_no_module_of_dedup_imports_an_engine_or_pipelines_at_module_level() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(module_level_imports(path) & {*ENGINES, "pipelines"})
        for path in ROOT.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_dedup_module_loads_no_engine() -> None:
    modules = [m.name for m in pkgutil.walk_packages([str(ROOT)], prefix="dedup.")]
    assert "dedup.cli" in modules and "dedup.staging" in modules
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {ENGINES!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def every_import(path: Path) -> set[str]:
    """The top-level packages a module imports anywhere, inside functions too."""
    return imported(ast.walk(ast.parse(path.read_text(encoding="utf-8"))))


def test_only_the_web_layer_of_the_review_service_speaks_http(tmp_path: Path) -> None:
    # The operations serve the API, the pages, the command line and the pipelines alike.
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from starlette.requests import Request\n")
    assert "starlette" in every_import(sample)  # the check sees an import inside a function
    service = ROOT / "adjudication"
    speaking = {
        str(path.relative_to(service))
        for path in service.rglob("*.py")
        if every_import(path) & {"fastapi", "starlette"}
    }
    assert "operations.py" not in speaking
    assert {p for p in speaking if not p.startswith("web/")} == {"service.py"}


def test_the_check_itself_catches_an_engine_import(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import os\nif True:\n    from pyspark.sql import SparkSession\n")
    assert "pyspark" in module_level_imports(sample)
    sample.write_text("def f():\n    import ray\n")
    assert "ray" not in module_level_imports(sample)
