"""Options shared by the commands, and the one way a command loads its settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dedup.settings import Settings, load_settings

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML settings file (else $DEDUP_CONFIG).")
]
LakeOption = Annotated[
    str | None, typer.Option("--lake", help="Lake root folder (overrides the settings).")
]
BatchOption = Annotated[str, typer.Option("--batch-id", help="The batch's id (names its work).")]


def settings_from(config: Path | None, lake: str | None = None) -> Settings:
    overrides: dict[str, Any] = {"lake": lake} if lake else {}
    return load_settings(config, overrides)
