"""Options shared by the commands, and the one way a command loads its settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dedup.errors import DedupError
from dedup.settings import Settings, load_settings

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML settings file (else $DEDUP_CONFIG).")
]
LakeOption = Annotated[
    str | None, typer.Option("--lake", help="Lake root folder (overrides the settings).")
]
ThresholdOption = Annotated[float | None, typer.Option("--threshold")]
TargetFpirOption = Annotated[
    float | None, typer.Option("--target-fpir", help="Calibrate the threshold to this FPIR.")
]
BatchOption = Annotated[str, typer.Option("--batch-id", help="The batch's id (names its work).")]


def one_threshold(threshold: float | None, target_fpir: float | None) -> None:
    """Refuse both at once before any work starts (the threshold policy refuses it too, but
    only once the batch's templates have been read)."""
    if threshold is not None and target_fpir is not None:
        raise DedupError("give --threshold or --target-fpir, not both")


def settings_from(config: Path | None, lake: str | None = None) -> Settings:
    overrides: dict[str, Any] = {"lake": lake} if lake else {}
    return load_settings(config, overrides)
