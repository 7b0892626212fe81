"""The layering of STYLE.md, held: the domain core ``dedup`` never imports ``pipelines``
anywhere (not even inside a function), never imports an engine (pyspark, ray, delta-spark,
deltalake) at module level, and loads none when every module of it is imported; importing
every module of ``pipelines`` starts no JVM and loads neither Ray nor delta-rs; and no module
of ``dedup`` or ``pipelines`` grows past a few hundred lines. The review service's operations
speak no HTTP: only its web layer imports fastapi or starlette."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dedup
import pipelines

ENGINES = ("pyspark", "ray", "delta", "deltalake")
ROOT = Path(dedup.__file__).parent
PIPELINES = Path(pipelines.__file__).parent
MAX_LINES = 400


def _imported(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return {node.module.split(".")[0]}
    return set()


def module_level_imports(path: Path) -> set[str]:
    """Top-level packages imported by statements at module level, including under if/try."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        for child in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            names |= _imported(child)
    return names


def all_imports(path: Path) -> set[str]:
    """Top-level packages imported anywhere in the module: in functions, classes, branches,
    and by name through ``importlib.import_module`` or ``__import__``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        names |= _imported(node)
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = ast.unparse(node.func)
            if called in ("importlib.import_module", "import_module", "__import__"):
                names.add(str(node.args[0].value).split(".")[0])
    return names


def test_no_module_of_dedup_imports_pipelines_anywhere() -> None:
    offenders = sorted(
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if "pipelines" in all_imports(path)
    )
    assert offenders == []


def test_no_module_of_dedup_imports_an_engine_at_module_level() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(module_level_imports(path) & set(ENGINES))
        for path in ROOT.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def import_every_module(root: Path, report: str) -> Any:
    """Import every module under ``root`` in a fresh interpreter (as collecting doctests
    does), then run ``report``; what it prints, as JSON."""
    modules = [
        m.name
        for m in pkgutil.walk_packages([str(root)], prefix=f"{root.name}.")
        if not m.name.endswith(".__main__")  # runs the command line; pytest skips it too
    ]
    assert modules
    probe = f"import importlib, json, sys\nfor name in {modules!r}: importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-c", probe + report], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_importing_every_dedup_module_loads_no_engine() -> None:
    report = (
        "print(json.dumps(sorted(m for m in sys.modules\n"
        f"    if m.split('.')[0] in {(*ENGINES, 'pipelines')!r})))\n"
    )
    assert import_every_module(ROOT, report) == []


def test_importing_every_pipelines_module_starts_no_engine() -> None:
    """Doctest collection imports all of ``pipelines``: pyspark may load (the Spark modules
    import it), but no JVM may start, and Ray and delta-rs load only where a job runs."""
    report = (
        "import pyspark\n"
        "print(json.dumps([pyspark.SparkContext._gateway is not None,\n"
        "    sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'deltalake'))]))\n"
    )
    assert import_every_module(PIPELINES, report) == [False, []]


def test_only_the_web_layer_of_the_review_service_speaks_http() -> None:
    # The operations serve the API, the pages, the command line and the pipelines alike.
    service = ROOT / "adjudication"
    speaking = {
        str(path.relative_to(service))
        for path in service.rglob("*.py")
        if all_imports(path) & {"fastapi", "starlette"}
    }
    assert "operations.py" not in speaking
    assert {p for p in speaking if not p.startswith("web/")} == {"service.py"}


def modules_over(limit: int) -> dict[str, int]:
    found = {}
    for root in (ROOT, PIPELINES):
        for path in root.rglob("*.py"):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limit:
                found[f"{root.name}/{path.relative_to(root)}"] = lines
    return found


def test_no_module_of_dedup_or_pipelines_is_over_400_lines() -> None:
    assert modules_over(MAX_LINES) == {}


def test_the_checks_themselves_catch_what_they_hold(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import os\nif True:\n    from pyspark.sql import SparkSession\n")
    assert "pyspark" in module_level_imports(sample)
    sample.write_text("def f():\n    import ray\n    from pipelines.match import run_match\n")
    assert "ray" not in module_level_imports(sample)
    assert {"ray", "pipelines"} <= all_imports(sample)
    sample.write_text("def f():\n    from starlette.requests import Request\n")
    assert "starlette" in all_imports(sample)
    sample.write_text(
        "import importlib\nclass A:\n    m = importlib.import_module('pipelines.x')\n"
    )
    assert "pipelines" in all_imports(sample)
    assert modules_over(1)  # every tree has a module over one line
