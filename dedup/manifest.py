"""The batch manifest: reading it (CSV, Parquet, JSON Lines) and validating each row.

The manifest format is documented in ``docs/manifest.md``. Reading keeps every value as the
operator wrote it (text), so that validation, not a file parser, decides what is malformed
and says why in a reject row. Only a manifest that cannot be read at all (missing file,
unknown extension, missing column) is a ``ManifestError``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.contracts.schemas import MANIFEST_COLUMNS, MANIFEST_REQUIRED, RAW_MANIFEST
from dedup.errors import ManifestError
from dedup.settings import ManifestSettings

ENROLLMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_TEXT = 256
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
# Longest raw value kept in a reject row for an invalid field, so a hostile row cannot bloat it.
_ECHO = 80


def _text(value: Any) -> str | None:
    """A cell as the operator's text: None for missing, ISO forms for dates and booleans."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _rows_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    columns: dict[str, list[Any]] = {field.name: [] for field in RAW_MANIFEST}
    for index, row in enumerate(rows):
        columns["row_index"].append(index)
        for name in MANIFEST_COLUMNS:
            columns[name].append(_text(row.get(name)))
        columns["row_error"].append(row.get("row_error"))
    return pa.Table.from_pydict(columns, schema=RAW_MANIFEST)


def _check_header(names: Iterable[str], path: Path) -> None:
    missing = [c for c in MANIFEST_REQUIRED if c not in set(names)]
    if missing:
        raise ManifestError(f"manifest {path} lacks required column(s): {', '.join(missing)}")


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise ManifestError(f"manifest {path} is empty: it needs a header row")
    header = [h.strip() for h in header]
    _check_header(header, path)
    for cells in reader:
        if not cells:
            continue
        if len(cells) != len(header):
            yield {"row_error": f"row has {len(cells)} fields; the header has {len(header)}"}
            continue
        yield dict(zip(header, cells, strict=True))


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    seen_header = False
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield {"row_error": f"line is not valid JSON: {exc.msg}"}
            continue
        if not isinstance(row, dict):
            yield {"row_error": "line is not a JSON object"}
            continue
        seen_header = True
        yield row
    if not seen_header:
        raise ManifestError(f"manifest {path} holds no JSON object rows")


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"manifest {path} is not a readable Parquet file: {exc}") from exc
    _check_header(table.column_names, path)
    yield from table.to_pylist()


_READERS = {
    ".csv": _csv_rows,
    ".jsonl": _jsonl_rows,
    ".ndjson": _jsonl_rows,
    ".parquet": _parquet_rows,
}


def read_manifest(path: Path) -> pa.Table:
    """Every row of the manifest, as text, with its 0-based ``row_index`` (``RAW_MANIFEST``)."""
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist or is not a file")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ManifestError(
            f"manifest {path}: unknown format {path.suffix!r}; use one of {', '.join(_READERS)}"
        )
    try:
        return _rows_to_table(reader(path))
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest {path} is not UTF-8 text: {exc}") from exc


def check_batch_id(batch_id: str) -> str:
    """A batch id names folders and keys rows, so it is held to a safe alphabet."""
    if not BATCH_ID.fullmatch(batch_id) or batch_id in (".", ".."):
        raise ManifestError(
            f"batch id {batch_id!r} must be 1 to 64 of A-Z a-z 0-9 _ . - (it names folders)"
        )
    return batch_id


@dataclass(frozen=True)
class ValidRow:
    """A row that passed every check the manifest alone allows (photos come later)."""

    enrollment_id: str
    photo_path: str
    consent: bool
    captured_at: dt.datetime
    center_id: str
    given_name: str | None
    family_name: str | None
    date_of_birth: dt.date | None
    sex: str | None


def _invalid(field: str, problem: str, value: str | None = None) -> RowRejected:
    shown = "" if value is None else f" (got {value[:_ECHO]!r})"
    return RowRejected(RejectReason.INVALID_ROW, f"{field}: {problem}{shown}")


def _present(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def _optional_text(row: dict[str, str | None], field: str) -> str | None:
    value = _present(row.get(field))
    if value is not None and len(value) > MAX_TEXT:
        raise _invalid(field, f"longer than {MAX_TEXT} characters")
    return value


def parse_captured_at(value: str) -> dt.datetime:
    """ISO 8601; a time without an offset is taken as UTC. Returned in UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise _invalid("captured_at", "not an ISO 8601 date-time", value) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def resolve_photo(photo_path: str, batch_dir: Path, settings: ManifestSettings) -> str:
    """Where the photo lives, or ``photo_outside_batch`` if the path may not be followed.

    Relative paths are joined to the batch folder (the manifest's folder) and must stay inside
    it after ``..`` and symlinks are resolved. Absolute paths and URIs are refused unless the
    settings allow them.
    """
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", photo_path):
        if not settings.allow_uris:
            raise RowRejected(
                RejectReason.PHOTO_OUTSIDE_BATCH, "URIs are not allowed (manifest.allow_uris)"
            )
        return photo_path
    if os.path.isabs(photo_path):
        if not settings.allow_absolute_paths:
            raise RowRejected(
                RejectReason.PHOTO_OUTSIDE_BATCH,
                "absolute paths are not allowed (manifest.allow_absolute_paths)",
            )
        return os.path.realpath(photo_path)
    root = os.path.realpath(batch_dir)
    lexical = os.path.normpath(os.path.join(root, photo_path))
    if os.path.commonpath([root, lexical]) != root:
        raise RowRejected(RejectReason.PHOTO_OUTSIDE_BATCH, "path leaves the batch folder")
    resolved = os.path.realpath(lexical)
    if os.path.commonpath([root, resolved]) != root:
        raise RowRejected(
            RejectReason.PHOTO_OUTSIDE_BATCH, "path resolves (via a link) outside the batch folder"
        )
    return resolved


def validate_row(row: dict[str, str | None]) -> ValidRow:
    """Check one raw manifest row's fields; raise ``RowRejected`` with the first failed check.

    The photo path is only checked for presence here: whether it may be followed
    (``resolve_photo``) is decided after the batch-level checks, in reason-code order.
    """
    if row.get("row_error"):
        raise RowRejected(RejectReason.INVALID_ROW, str(row["row_error"]))
    enrollment_id = _present(row.get("enrollment_id"))
    if enrollment_id is None:
        raise _invalid("enrollment_id", "missing")
    if not ENROLLMENT_ID.fullmatch(enrollment_id):
        raise _invalid("enrollment_id", "must be 1 to 64 of A-Z a-z 0-9 _ -", enrollment_id)
    photo_path = _present(row.get("photo_path"))
    if photo_path is None:
        raise _invalid("photo_path", "missing")
    captured_raw = _present(row.get("captured_at"))
    if captured_raw is None:
        raise _invalid("captured_at", "missing")
    captured_at = parse_captured_at(captured_raw)
    center_id = _present(row.get("center_id"))
    if center_id is None:
        raise _invalid("center_id", "missing")
    if len(center_id) > 64 or not center_id.isprintable():
        raise _invalid("center_id", "must be at most 64 printable characters", center_id)
    dob_raw = _optional_text(row, "date_of_birth")
    try:
        date_of_birth = dt.date.fromisoformat(dob_raw) if dob_raw else None
    except ValueError as exc:
        raise _invalid("date_of_birth", "not an ISO date (YYYY-MM-DD)", dob_raw) from exc
    display = {name: _optional_text(row, name) for name in ("given_name", "family_name", "sex")}
    consent_raw = (_present(row.get("consent")) or "").lower()
    if consent_raw and consent_raw not in _TRUE | _FALSE:
        raise _invalid("consent", "must be true or false", consent_raw)
    if consent_raw not in _TRUE:
        raise RowRejected(
            RejectReason.CONSENT_MISSING,
            "consent is false" if consent_raw else "consent is not recorded",
        )
    return ValidRow(
        enrollment_id=enrollment_id,
        photo_path=photo_path,
        consent=True,
        captured_at=captured_at,
        center_id=center_id,
        date_of_birth=date_of_birth,
        **display,
    )


def repeated_ids(enrollment_ids: Iterable[str | None]) -> set[str]:
    """The enrollment ids that occur on more than one row."""
    counts = Counter(i for i in enrollment_ids if i)
    return {i for i, n in counts.items() if n > 1}
