"""The nightly batch report: its figures from plain rows (``batch_report``), its plots
(``plots``) and its page (``page``). Figures only: no face, name or enrollment id."""

from __future__ import annotations

from pathlib import Path

from dedup.contracts.batch_ids import check_batch_id

REPORTS_FOLDER = "reports"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


def report_folder(reports_root: Path, batch_id: str) -> Path:
    """Where a batch's report lives: ``<reports root>/<batch>`` (the root is ``<lake>/reports``)."""
    return reports_root / check_batch_id(batch_id)
