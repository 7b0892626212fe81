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
    """``<lake>/reports``: where every batch's report is written (and served from). A lake on
    an object store has no local folder: its reports go to ``adjudication.reports_dir``, the
    folder the review service serves them from."""
    if is_uri(settings.lake):
        if settings.adjudication.reports_dir is None:
            raise ConfigError(
                f"the lake {settings.lake} is an object store: set adjudication.reports_dir "
                "to the local folder the batch reports are written to and served from"
            )
        return settings.adjudication.reports_dir
    return Path(settings.lake) / REPORTS_FOLDER
