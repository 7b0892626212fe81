"""``dedup reasons`` and ``dedup config``: what the reject codes mean, what the settings are."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from dedup.contracts.reasons import REASON_DESCRIPTIONS, RejectReason, reasons_markdown
from pipelines.cli.options import ConfigOption, settings_from
from pipelines.cli.output import console

reference_app = typer.Typer()


@reference_app.command()
def reasons(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print as a Markdown table.")
    ] = False,
) -> None:
    """List the reject reason codes, in the order the checks run."""
    if markdown:
        console.print(reasons_markdown(), highlight=False)
        return
    table = Table("code", "meaning")
    for code in RejectReason:
        table.add_row(code.value, REASON_DESCRIPTIONS[code])
    console.print(table)


@reference_app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective settings (defaults, YAML file, environment) as JSON."""
    console.print_json(settings_from(config).to_json())
