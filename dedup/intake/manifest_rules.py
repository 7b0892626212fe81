"""The batch manifest's rows: validating each one, and where its photo may be read from.

The manifest format is documented in ``docs/manifest.md``; reading it (every encoding and
format problem a row can have) is ``dedup.intake.manifest_reader``'s. Validation takes each row's
text and decides, field by field, whether it can be staged or which reason rejects it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dedup.contracts.locations import is_uri
from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.settings import ManifestSettings

ENROLLMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TEXT = 256
# PATH_MAX on Linux: no longer path can be opened.
MAX_PHOTO_PATH = 4096
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
# Longest raw value kept in a reject row for an invalid field, so a hostile row cannot bloat it.
_ECHO = 80
# C0 and C1 control characters (NUL, newline, escape, ...): no name, id or path holds one, and
# PostgreSQL cannot store NUL at all.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


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


@dataclass(frozen=True)
class CaptureWindow:
    """The instants a ``captured_at`` may name, fixed once per batch so a re-run agrees.

    >>> first_run = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    >>> CaptureWindow.for_batch(ManifestSettings(), first_run).latest.isoformat()
    '2026-12-02T00:00:00+00:00'
    """

    earliest: dt.datetime
    latest: dt.datetime
    ahead_hours: float  # how far past the batch's first run ``latest`` lies

    @classmethod
    def for_batch(cls, settings: ManifestSettings, first_run: dt.datetime) -> CaptureWindow:
        ahead = dt.timedelta(hours=settings.capture_ahead_hours)
        latest = first_run.astimezone(dt.UTC) + ahead
        return cls(settings.earliest_capture, latest, settings.capture_ahead_hours)


def _invalid(field: str, problem: str, value: str | None = None) -> RowRejected:
    shown = "" if value is None else f" (got {value[:_ECHO]!r})"
    return RowRejected(RejectReason.INVALID_ROW, f"{field}: {problem}{shown}")


def _text(row: dict[str, str | None], field: str, limit: int = MAX_TEXT) -> str | None:
    """A field's text, stripped (None when empty), without control characters, within ``limit``."""
    value = row.get(field)
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    control = _CONTROL.search(value)
    if control is not None:
        raise _invalid(field, f"holds a control character (U+{ord(control.group()):04X})")
    if len(value) > limit:
        raise _invalid(field, f"longer than {limit} characters")
    return value


def _required(row: dict[str, str | None], field: str, limit: int = MAX_TEXT) -> str:
    value = _text(row, field, limit)
    if value is None:
        raise _invalid(field, "missing")
    return value


def parse_captured_at(value: str) -> dt.datetime:
    """ISO 8601; a time without an offset is taken as UTC. Returned in UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 east of UTC
        raise _invalid("captured_at", "not an ISO 8601 date-time", value) from exc


def _captured_within(value: str, window: CaptureWindow) -> dt.datetime:
    """The capture time, or invalid_row. The detail names the bound, never the clock, so
    every run of a batch gives the same words."""
    captured = parse_captured_at(value)
    if captured < window.earliest:
        bound = f"before {window.earliest:%Y-%m-%d %H:%M} UTC (manifest.earliest_capture)"
        raise _invalid("captured_at", bound, value)
    if captured > window.latest:
        bound = (
            f"more than {window.ahead_hours:g} h after the batch was first staged "
            "(manifest.capture_ahead_hours)"
        )
        raise _invalid("captured_at", bound, value)
    return captured


def resolve_photo(photo_path: str, batch_dir: Path, settings: ManifestSettings) -> str:
    """Where the photo lives, or ``photo_outside_batch`` if the path may not be followed.

    Relative paths are joined to the batch folder (the manifest's folder) and must stay inside
    it after ``..`` and symlinks are resolved. Absolute paths and URIs are refused unless the
    settings allow them. Nothing is opened here: ``dedup.intake.photo_files`` reads the file.
    """
    if is_uri(photo_path):
        if not settings.allow_uris:
            raise RowRejected(
                RejectReason.PHOTO_OUTSIDE_BATCH, "URIs are not allowed (manifest.allow_uris)"
            )
        return photo_path
    try:
        return _resolve_local(photo_path, batch_dir, settings)
    except ValueError as exc:  # a NUL byte: no file can have that name
        raise _invalid("photo_path", "is not a path a file can have") from exc


def _resolve_local(photo_path: str, batch_dir: Path, settings: ManifestSettings) -> str:
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


def validate_row(row: dict[str, str | None], window: CaptureWindow) -> ValidRow:
    """Check one raw manifest row's fields; raise ``RowRejected`` with the first failed check.

    The photo path is only checked for its form here: whether it may be followed
    (``resolve_photo``) is decided after the batch-level checks, in reason-code order.
    """
    if row.get("row_error"):
        raise RowRejected(RejectReason.INVALID_ROW, str(row["row_error"]))
    enrollment_id = _required(row, "enrollment_id")
    if not ENROLLMENT_ID.fullmatch(enrollment_id):
        raise _invalid("enrollment_id", "must be 1 to 64 of A-Z a-z 0-9 _ -", enrollment_id)
    photo_path = _required(row, "photo_path", MAX_PHOTO_PATH)
    captured_at = _captured_within(_required(row, "captured_at"), window)
    center_id = _required(row, "center_id")
    if len(center_id) > 64 or not center_id.isprintable():
        raise _invalid("center_id", "must be at most 64 printable characters", center_id)
    dob_raw = _text(row, "date_of_birth")
    try:
        date_of_birth = dt.date.fromisoformat(dob_raw) if dob_raw else None
    except ValueError as exc:
        raise _invalid("date_of_birth", "not an ISO date (YYYY-MM-DD)", dob_raw) from exc
    display = {name: _text(row, name) for name in ("given_name", "family_name", "sex")}
    consent_raw = (_text(row, "consent") or "").lower()
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
