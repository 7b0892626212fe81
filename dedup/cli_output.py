"""What every ``dedup`` command prints through: one console for results, one for errors, and
the one way a ``DedupError`` ends a command (a one-line message, exit code 2)."""

from __future__ import annotations

import typer
from rich.console import Console

from dedup.errors import DedupError

console = Console()
err_console = Console(stderr=True)


def fail(error: DedupError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {error}")
    return typer.Exit(code=2)
