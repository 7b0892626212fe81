"""Property-based tests of the stage job's per-row functions, without Spark: whatever the bytes
of a manifest and whatever lies at its photo paths, every row is read exactly once, gets one
documented verdict, and gets the same verdict again.

Bounded for CI (``max_examples`` below); ``DEDUP_HYPOTHESIS_SCALE=10`` runs ten times as many.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from dedup.contracts.schemas import MANIFEST_COLUMNS, RAW_MANIFEST
from dedup.errors import ManifestError
from dedup.intake.manifest_reader import read_manifest
from dedup.intake.manifest_rules import ENROLLMENT_ID, CaptureWindow
from dedup.intake.partition_steps import VALIDATED, photo_verdict, validate_row_verdict
from dedup.settings import ManifestSettings, Settings, load_settings
from tests.hostile import (
    DOCUMENTED,
    PHOTO_KINDS,
    SCALE,
    Cell,
    cells,
    csv_fits,
    csv_record_lines,
    encode_manifest,
    fails_if_blocked,
    make_photo,
    photo_specs,
)

WINDOW = CaptureWindow.for_batch(ManifestSettings(), dt.datetime(2026, 11, 21, tzinfo=dt.UTC))
_FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

manifest_rows = st.lists(
    st.fixed_dictionaries({name: cells(name) for name in MANIFEST_COLUMNS}), max_size=8
)


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    with fails_if_blocked(600, "a per-row step"):
        yield


def _record_starts(rows: list[dict[str, Cell]]) -> list[int]:
    """The 1-based line each CSV record begins on (the header is line 1)."""
    starts, line = [], 2
    for row in rows:
        starts.append(line)
        line += csv_record_lines(row)
    return starts


def _as_text(cell: Cell, fmt: str) -> tuple[bool, str | None]:
    """(whether the cell is text, the text a reader must give for it)."""
    if cell is None:
        return True, "" if fmt == "csv" else None
    if isinstance(cell, bytes):
        try:
            return True, cell.decode("utf-8")
        except UnicodeDecodeError:
            return False, None
    return True, cell


@given(rows=manifest_rows, fmt=st.sampled_from(["csv", "jsonl", "parquet"]), bom=st.booleans())
@settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=_FIXTURES)
def test_every_row_of_any_manifest_is_read_exactly_once(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[dict[str, Cell]],
    fmt: str,
    bom: bool,
) -> None:
    if fmt == "csv":
        assume(csv_fits(rows))
    path = encode_manifest(rows, fmt, tmp_path_factory.mktemp("m") / "manifest", bom)
    if fmt == "jsonl" and not rows:
        with pytest.raises(ManifestError):
            read_manifest(path)
        return
    table = read_manifest(path)
    assert table.schema == RAW_MANIFEST
    out = io.BytesIO()
    pq.write_table(table, out)  # every value is storable text
    assert pq.read_table(pa.BufferReader(out.getvalue())).equals(table)
    read = table.to_pylist()
    assert [r["row_index"] for r in read] == list(range(len(rows)))
    starts = _record_starts(rows) if fmt == "csv" else []
    for index, (got, written) in enumerate(zip(read, rows, strict=True)):
        where = {
            "csv": (f"line {starts[index]}:", f"lines {starts[index]} to ") if starts else (),
            "jsonl": (f"line {index + 1}:",),
            "parquet": (f"Parquet row {index + 1}:",),
        }[fmt]
        texts = {name: _as_text(written[name], fmt) for name in MANIFEST_COLUMNS}
        if got["row_error"] is not None:
            assert got["row_error"].startswith(where), got["row_error"]
            continue
        assert all(is_text for is_text, _ in texts.values()), (written, got)
        for name, (_, text) in texts.items():
            assert got[name] == text, (name, written[name], got[name])


row_texts = st.fixed_dictionaries(
    {name: cells(name, with_bytes=False) for name in MANIFEST_COLUMNS}
)


@given(row=row_texts, row_error=st.one_of(st.none(), st.just("line 2: something")))
@settings(max_examples=500 * SCALE, deadline=None)
def test_every_row_gets_one_documented_verdict_and_the_same_again(
    row: dict[str, Any], row_error: str | None
) -> None:
    raw = {"row_index": 0, **row, "row_error": row_error}
    verdict = validate_row_verdict(raw, WINDOW)
    assert validate_row_verdict(raw, WINDOW) == verdict
    pa.RecordBatch.from_pylist([verdict], schema=VALIDATED)  # fits the declared columns
    reason = verdict["reason_code"]
    if reason is None:
        assert ENROLLMENT_ID.fullmatch(verdict["enrollment_id"])
        assert WINDOW.earliest <= verdict["captured_at"] <= WINDOW.latest
        for name in ("photo_path", "center_id", "given_name", "family_name", "sex"):
            value = verdict[name]
            assert value is None or value == value.strip()
            assert value is None or not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)
    else:
        assert reason in DOCUMENTED, verdict
        assert verdict["detail"]
        if row_error:
            assert (reason, verdict["detail"]) == ("invalid_row", row_error)


@pytest.fixture(scope="module")
def portrait(portraits: Path) -> bytes:
    """obama.jpg at 480 px: one face, found in a fraction of a second."""
    with Image.open(portraits / "obama.jpg") as image:
        image.thumbnail((480, 480))
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def stage_settings() -> Settings:
    return load_settings(overrides={"imaging": {"read_timeout_s": 5.0}})


@given(spec=photo_specs)
@settings(max_examples=80 * SCALE, deadline=None, suppress_health_check=_FIXTURES)
def test_whatever_is_at_a_photo_path_gets_its_verdict_without_blocking(
    tmp_path_factory: pytest.TempPathFactory,
    portrait: bytes,
    stage_settings: Settings,
    spec: Any,
) -> None:
    batch = tmp_path_factory.mktemp("batch")
    photo_path = make_photo(batch, 0, spec, portrait)
    row = {"row_index": 7, "photo_path": photo_path}
    verdict = photo_verdict(row, batch, stage_settings)
    assert photo_verdict(row, batch, stage_settings) == verdict
    reason = verdict["reason_code"]
    expected = PHOTO_KINDS[spec.kind]
    if expected is not None:
        assert reason == expected.value, (spec, verdict)
    assert reason is None or reason in DOCUMENTED, verdict
    if reason is None:
        assert verdict["chip_png"].startswith(b"\x89PNG")


def test_a_fault_on_one_row_is_that_row_s_internal_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stage_settings: Settings
) -> None:
    """No input is known to cause one (the properties above hold that), but a fault that
    escapes a check must cost its row, not the Spark task and with it the batch."""

    def broken(*args: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("dedup.intake.partition_steps.read_photo", broken)
    (tmp_path / "a.jpg").write_bytes(b"x")
    verdict = photo_verdict({"row_index": 3, "photo_path": "a.jpg"}, tmp_path, stage_settings)
    assert verdict["reason_code"] == "internal_error"
    assert verdict["detail"].startswith("KeyError at test_stage_properties.py:")
    assert verdict["detail"].endswith(": 'a bug'")
    monkeypatch.setattr("dedup.intake.partition_steps.validate_row", broken)
    row = {"row_index": 4, "enrollment_id": "E1", "row_error": None}
    checked = validate_row_verdict(row, WINDOW)
    assert (checked["reason_code"], checked["enrollment_id"]) == ("internal_error", "E1")
