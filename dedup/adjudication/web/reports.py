"""The batch reports on the operator page: read-only, for the roles that see the queue state.

A report holds figures only (counts, scores, times: no face, name or enrollment id), so
reading one is not audited as a view of a person. Files are served only from
``<reports_dir>/<batch>/report.{html,json}``: the batch id is held to the batch-id alphabet
and the name to those two, and the resolved path must stay inside the reports folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from dedup.adjudication.access import Permission
from dedup.adjudication.accounts import Principal
from dedup.adjudication.web.guards import context_of, require
from dedup.contracts.batch_ids import BATCH_ID
from dedup.reporting import REPORT_HTML, REPORT_JSON

router = APIRouter(include_in_schema=False)
MEDIA_TYPES = {REPORT_HTML: "text/html; charset=utf-8", REPORT_JSON: "application/json"}
# The page is self-contained: its plots are data URIs and its style is inline; nothing else.
REPORT_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'; "
    "form-action 'none'; base-uri 'none'"
)
LISTED = 30


def report_file(root: Path | None, batch_id: str, name: str) -> Path | None:
    """The report file asked for, or None where it is not a report file inside ``root``."""
    if root is None or name not in MEDIA_TYPES or not BATCH_ID.fullmatch(batch_id):
        return None
    if batch_id in (".", ".."):
        return None
    base = root.resolve()
    path = (base / batch_id / name).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def listed_reports(root: Path | None, limit: int = LISTED) -> list[str]:
    """Batches with a written report page, newest first."""
    if root is None or not root.is_dir():
        return []
    found = [
        (page.stat().st_mtime, folder.name)
        for folder in root.iterdir()
        if BATCH_ID.fullmatch(folder.name)
        and (page := folder / REPORT_HTML).is_file()
        and report_file(root, folder.name, REPORT_HTML) is not None
    ]
    return [name for _, name in sorted(found, reverse=True)[:limit]]


@router.get("/operator/reports/{batch_id}/{name}")
def report(
    batch_id: str,
    name: str,
    request: Request,
    principal: Annotated[Principal, Depends(require(Permission.VIEW_QUEUE))],
) -> Response:
    path = report_file(context_of(request).settings.reports_dir, batch_id, name)
    if path is None:
        return Response("no such report", status_code=404, media_type="text/plain")
    response = Response(path.read_bytes(), media_type=MEDIA_TYPES[name])
    response.headers["Content-Security-Policy"] = REPORT_CSP
    return response
