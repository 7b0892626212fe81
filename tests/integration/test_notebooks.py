"""The notebooks of ``notebooks/`` run from top to bottom on a real Jupyter kernel.

Each jupytext source (``notebooks/*.py``, percent format) is read into a notebook and executed
by nbclient on an IPython kernel of this interpreter, with a time limit per cell. The notebooks
assert what they show, so a change that breaks one of their claims fails here with the failing
cell's source and traceback. Nothing is written into the checkout or the home folder: the
kernel's working folder, its connection file, its IPython profile and the kernelspec that
points at ``sys.executable`` all live under the test's temporary folder, so a clean clone with
nothing in ``~/.local/share/jupyter`` works.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
KERNEL = "dedup-notebooks"
CELL_TIMEOUT_S = 120  # the slowest cell takes seconds; a hung one fails instead of stalling CI


def kernel_manager(folder: Path) -> AsyncKernelManager:
    """A manager for an IPython kernel of this interpreter, found only in ``folder``."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "dedup (tests)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(folder / "kernels")])
    # Unix sockets under ``folder`` rather than loopback ports (no port for two workers to race
    # for), where the path fits a socket address (107 bytes).
    sockets = str(folder / "ipc")
    transport = "ipc" if len(sockets) < 100 else "tcp"
    manager = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=specs, transport=transport)
    if transport == "ipc":
        manager.ip = sockets
    manager.connection_file = str(folder / "connection.json")
    return manager


def kernel_environment(folder: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return os.environ | {
        "PYTHONPATH": path,  # this checkout's dedup, whatever is installed
        "IPYTHONDIR": str(folder / "ipython"),
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
        "MPLBACKEND": "Agg",  # no display, whatever the caller's environment says
    }


def test_the_notebooks_are_there_and_their_outputs_are_ignored() -> None:
    names = {p.stem for p in NOTEBOOKS}
    assert {"evaluation_walkthrough", "threshold_calibration", "capacity_planning"} <= names
    ignored = (ROOT / "notebooks" / ".gitignore").read_text(encoding="utf-8").split()
    assert "*.ipynb" in ignored


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(source: Path, tmp_path: Path) -> None:
    notebook = jupytext.read(source)
    work = tmp_path / "work"
    work.mkdir()
    client = NotebookClient(
        notebook,
        km=kernel_manager(tmp_path),
        timeout=CELL_TIMEOUT_S,
        startup_timeout=120,
        resources={"metadata": {"path": str(work)}},
        extra_arguments=["--InteractiveShell.colors=nocolor"],  # plain tracebacks in the report
    )
    try:
        # cleanup_kc: shut the kernel down afterwards, though the client did not make its manager
        client.execute(cleanup_kc=True, env=kernel_environment(tmp_path))
    except CellExecutionError as error:
        pytest.fail(f"{source.name}: {error}", pytrace=False)
    nbformat.validate(notebook)
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was drawn"
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert list(work.iterdir()) == [], "the notebook left files in its working folder"
