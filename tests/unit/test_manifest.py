from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.contracts.schemas import RAW_MANIFEST
from dedup.errors import ManifestError
from dedup.intake.manifest_reader import read_manifest
from dedup.intake.manifest_rules import CaptureWindow, repeated_ids, resolve_photo, validate_row
from dedup.settings import ManifestSettings

# The batch was first run on 2026-11-21 at noon: captures up to a day later are accepted.
WINDOW = CaptureWindow.for_batch(ManifestSettings(), dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC))

GOOD = {
    "enrollment_id": "ENR-0001_a",
    "photo_path": "photos/a.jpg",
    "consent": "true",
    "captured_at": "2026-11-20T10:00:00+02:00",
    "center_id": "C-01",
    "given_name": "Ada",
    "family_name": "Lovelace",
    "date_of_birth": "1990-12-10",
    "sex": "F",
}


def rejected(row: dict[str, str | None]) -> RowRejected:
    with pytest.raises(RowRejected) as caught:
        validate_row(row, WINDOW)
    return caught.value


def test_good_row_is_typed_and_in_utc() -> None:
    valid = validate_row(dict(GOOD), WINDOW)
    assert valid.enrollment_id == "ENR-0001_a"
    assert valid.captured_at == dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
    assert valid.date_of_birth == dt.date(1990, 12, 10)
    assert valid.consent is True


def test_time_without_offset_is_taken_as_utc() -> None:
    valid = validate_row({**GOOD, "captured_at": "2026-11-20T10:00:00"}, WINDOW)
    assert valid.captured_at == dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("enrollment_id", "has space"),
        ("enrollment_id", "bang!"),
        ("enrollment_id", "x" * 65),
        ("enrollment_id", ""),
        ("photo_path", ""),
        ("captured_at", "yesterday"),
        ("captured_at", None),
        ("center_id", " "),
        ("date_of_birth", "10/12/1990"),
        ("consent", "maybe"),
        ("given_name", "x" * 300),
    ],
)
def test_malformed_fields_are_invalid_rows_naming_the_field(field: str, value: str | None) -> None:
    error = rejected({**GOOD, field: value})
    assert error.reason is RejectReason.INVALID_ROW
    assert error.detail.startswith(field)


def test_sixty_four_character_id_is_accepted() -> None:
    assert validate_row({**GOOD, "enrollment_id": "a" * 64}, WINDOW).enrollment_id == "a" * 64


@pytest.mark.parametrize("consent", ["false", "0", "no", "", None])
def test_consent_absent_or_false(consent: str | None) -> None:
    assert rejected({**GOOD, "consent": consent}).reason is RejectReason.CONSENT_MISSING


def test_invalid_field_wins_over_missing_consent() -> None:
    error = rejected({**GOOD, "consent": "false", "enrollment_id": "bad id"})
    assert error.reason is RejectReason.INVALID_ROW


def test_reader_error_is_an_invalid_row() -> None:
    error = rejected({"row_error": "row has 2 fields; the header has 5"})
    assert error.reason is RejectReason.INVALID_ROW


def test_repeated_ids() -> None:
    assert repeated_ids(["a", "b", "a", None, "", "c", "c"]) == {"a", "c"}


class TestResolvePhoto:
    def test_relative_path_inside_batch(self, tmp_path: Path) -> None:
        (tmp_path / "photos").mkdir()
        (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
        assert resolve_photo("photos/a.jpg", tmp_path, ManifestSettings()) == os.path.realpath(
            tmp_path / "photos" / "a.jpg"
        )

    @pytest.mark.parametrize("path", ["../a.jpg", "photos/../../a.jpg", "/etc/hostname"])
    def test_escapes_and_absolute_paths_are_refused(self, tmp_path: Path, path: str) -> None:
        with pytest.raises(RowRejected) as caught:
            resolve_photo(path, tmp_path, ManifestSettings())
        assert caught.value.reason is RejectReason.PHOTO_OUTSIDE_BATCH

    def test_symlink_out_of_the_batch_is_refused(self, tmp_path: Path) -> None:
        batch, outside = tmp_path / "batch", tmp_path / "outside.jpg"
        batch.mkdir()
        outside.write_bytes(b"x")
        (batch / "link.jpg").symlink_to(outside)
        with pytest.raises(RowRejected) as caught:
            resolve_photo("link.jpg", batch, ManifestSettings())
        assert caught.value.reason is RejectReason.PHOTO_OUTSIDE_BATCH
        assert "link" in caught.value.detail

    def test_absolute_paths_and_uris_only_when_allowed(self, tmp_path: Path) -> None:
        with pytest.raises(RowRejected):
            resolve_photo("s3://bucket/a.jpg", tmp_path, ManifestSettings())
        allowing = ManifestSettings(allow_absolute_paths=True, allow_uris=True)
        assert resolve_photo("s3://bucket/a.jpg", tmp_path, allowing) == "s3://bucket/a.jpg"
        assert resolve_photo("/etc/hostname", tmp_path, allowing) == os.path.realpath(
            "/etc/hostname"
        )


ROWS: list[dict[str, Any]] = [
    {**GOOD, "enrollment_id": "A1"},
    {**GOOD, "enrollment_id": "A2", "consent": "false", "given_name": None},
]


def write_manifest(folder: Path, fmt: str) -> Path:
    path = folder / f"manifest.{fmt}"
    if fmt == "csv":
        header = list(GOOD)
        lines = [",".join(header)]
        lines += [",".join(row[h] or "" for h in header) for row in ROWS]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n", encoding="utf-8")
    else:
        typed = [
            {**r, "consent": r["consent"] == "true", "date_of_birth": dt.date(1990, 12, 10)}
            for r in ROWS
        ]
        pq.write_table(pa.Table.from_pylist(typed), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_three_formats_read_to_the_same_text(tmp_path: Path, fmt: str) -> None:
    table = read_manifest(write_manifest(tmp_path, fmt))
    assert table.schema == RAW_MANIFEST
    rows = table.to_pylist()
    assert [r["row_index"] for r in rows] == [0, 1]
    assert [r["enrollment_id"] for r in rows] == ["A1", "A2"]
    assert [r["consent"] for r in rows] == ["true", "false"]
    assert rows[0]["date_of_birth"] == "1990-12-10"
    assert validate_row(rows[0], WINDOW).enrollment_id == "A1"


def test_csv_row_with_wrong_field_count_is_kept_as_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "enrollment_id,photo_path,consent,captured_at,center_id\n"
        "A1,a.jpg,true,2026-01-01,C1\nA2,b.jpg\n\nA3,c.jpg,true,2026-01-01,C1\n",
        encoding="utf-8",
    )
    rows = read_manifest(path).to_pylist()
    assert [r["row_index"] for r in rows] == [0, 1, 2]
    assert rows[1]["row_error"] and rows[2]["enrollment_id"] == "A3"


def test_bad_json_line_is_kept_as_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n[1, 2]\n", encoding="utf-8")
    rows = read_manifest(path).to_pylist()
    assert len(rows) == 3
    assert "JSON" in rows[1]["row_error"] and "object" in rows[2]["row_error"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.csv", "enrollment_id,photo_path\nA1,a.jpg\n", "lacks required column"),
        ("m.csv", "", "empty"),
        ("m.txt", "x", "unknown format"),
        ("m.parquet", "not parquet", "not a readable Parquet"),
    ],
)
def test_unreadable_manifest_is_a_clear_error(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "absent.csv")


def test_nul_in_photo_path_is_an_invalid_row_not_a_crash(tmp_path: Path) -> None:
    """Regression: ``photos/a.jpg\\x00.png`` raised ValueError (embedded null byte) from path
    resolution and stopped the whole stage job."""
    error = rejected({**GOOD, "photo_path": "photos/a.jpg\x00.png"})
    assert error.reason is RejectReason.INVALID_ROW
    assert error.detail == "photo_path: holds a control character (U+0000)"
    # resolve_photo is also called outside validation (the review feed): it refuses, too.
    with pytest.raises(RowRejected) as caught:
        resolve_photo("photos/a.jpg\x00.png", tmp_path, ManifestSettings())
    assert caught.value.reason is RejectReason.INVALID_ROW


@pytest.mark.parametrize(
    "field", ["enrollment_id", "photo_path", "center_id", "given_name", "family_name", "sex"]
)
@pytest.mark.parametrize("char", ["\x00", "\n", "\x1b", "\x7f", "\x85"])
def test_control_characters_are_refused_in_every_text_field(field: str, char: str) -> None:
    error = rejected({**GOOD, field: f"ab{char}cd"})
    assert error.reason is RejectReason.INVALID_ROW
    assert error.detail.startswith(field)


def test_markup_and_formulas_are_text_like_any_other() -> None:
    valid = validate_row(
        {**GOOD, "given_name": '=HYPERLINK("x")', "family_name": "<b>Ada</b> & co"}, WINDOW
    )
    assert (valid.given_name, valid.family_name) == ('=HYPERLINK("x")', "<b>Ada</b> & co")


def test_photo_path_longer_than_any_path_is_invalid() -> None:
    error = rejected({**GOOD, "photo_path": "a/" * 3000})
    assert (error.reason, error.detail) == (
        RejectReason.INVALID_ROW,
        "photo_path: longer than 4096 characters",
    )


@pytest.mark.parametrize(
    ("captured_at", "bound"),
    [
        ("2999-11-20T10:00:00Z", "more than 24 h after the batch was first staged"),
        ("2026-11-22T12:00:01Z", "more than 24 h after the batch was first staged"),
        ("1500-01-01T00:00:00Z", "before 1990-01-01 00:00 UTC (manifest.earliest_capture)"),
        ("1989-12-31T23:59:59Z", "before 1990-01-01 00:00 UTC (manifest.earliest_capture)"),
    ],
)
def test_captured_at_outside_the_window_is_invalid(captured_at: str, bound: str) -> None:
    """Regression: a capture in 2999 was staged, and Spark's INT96 timestamp then made the
    enrollments table unreadable by delta-rs for every later step."""
    error = rejected({**GOOD, "captured_at": captured_at})
    assert error.reason is RejectReason.INVALID_ROW
    assert error.detail.startswith(f"captured_at: {bound}")
    assert captured_at in error.detail


@pytest.mark.parametrize("captured_at", ["1990-01-01T00:00:00Z", "2026-11-22T12:00:00Z"])
def test_captured_at_at_the_window_edges_is_valid(captured_at: str) -> None:
    assert validate_row({**GOOD, "captured_at": captured_at}, WINDOW).captured_at.year > 1989


def test_the_window_follows_the_settings() -> None:
    settings = ManifestSettings(
        earliest_capture=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), capture_ahead_hours=0
    )
    window = CaptureWindow.for_batch(settings, dt.datetime(2026, 11, 21, tzinfo=dt.UTC))
    assert validate_row({**GOOD, "captured_at": "2020-06-01T00:00:00Z"}, window)
    with pytest.raises(RowRejected):
        validate_row({**GOOD, "captured_at": "2019-06-01T00:00:00Z"}, window)
    with pytest.raises(RowRejected):
        validate_row({**GOOD, "captured_at": "2026-11-21T00:00:01Z"}, window)


def test_a_year_one_time_east_of_utc_is_invalid_not_an_overflow() -> None:
    error = rejected({**GOOD, "captured_at": "0001-01-01T00:30:00+01:00"})
    assert error.detail.startswith("captured_at: not an ISO 8601 date-time")
