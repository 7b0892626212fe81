"""The nightly batch report: its figures from plain rows (``batch_report``), its plots
(``plots``) and its page (``page``). Figures only: no face, name or enrollment id."""

from __future__ import annotations

from pathlib import Path

from dedup.contracts.batch_ids import check_batch_id
from dedup.contracts.locations import is_uri
from dedup.errors import ConfigError
from dedup.settings import Settings

REPORTS_FOLDER = "reports"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


def report_folder(reports_root: Path, batch_id: str) -> Path:
    """Where a batch's report lives: ``<reports root>/<batch>`` (the root is ``<lake>/reports``)."""
    return reports_root / check_batch_id(batch_id)


def reports_root(settings: Settings) -> Path:
    """``<lake>/reports``: where every batch's report is written (and served from)."""
    if is_uri(settings.lake):
        raise ConfigError(
            f"the batch report is written into a local lake folder; {settings.lake} is an "
            "object-store URI"
        )
    return Path(settings.lake) / REPORTS_FOLDER
