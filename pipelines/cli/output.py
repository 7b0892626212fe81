"""What every ``dedup`` command prints through, and the one error boundary.

Results go to standard output, errors to standard error. A ``DedupError`` raised anywhere in
a command ends it here, once, as a one-line message a registry operator can act on and exit
code 2; anything else is a bug and keeps its traceback.

What is printed carries user data (paths, enrollment ids, user names), so the consoles read
no markup in it (a ``[/]`` in a path would otherwise end the command with a markup error,
and ``[night]`` would vanish from it) and never wrap a line (a path or token must survive
copying). Styled pieces are built as ``rich.text.Text`` or passed as ``style``.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from dedup.errors import DedupError
from pipelines.job_report import JobReport

console = Console(markup=False, soft_wrap=True)
err_console = Console(stderr=True, markup=False, soft_wrap=True)


def fail(error: DedupError) -> typer.Exit:
    err_console.print(Text.assemble(("error:", "bold red"), " ", str(error)))
    return typer.Exit(code=2)


class ErrorBoundary(TyperGroup):
    """The command group every ``dedup`` command runs inside: subcommands and nested groups
    are invoked from here, so one ``except`` covers them all."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except DedupError as error:
            raise fail(error) from error


def print_report(report: JobReport) -> None:
    for line in report.summary():
        console.print(line)
