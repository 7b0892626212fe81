"""Reading manifests whatever their bytes: one bad row is one row error, naming its line;
only a file that is not a table at all is a ManifestError."""

from __future__ import annotations

import codecs
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup.contracts.schemas import MANIFEST_REQUIRED, RAW_MANIFEST
from dedup.errors import ManifestError
from dedup.intake.manifest_reader import read_manifest

HEADER = ",".join(MANIFEST_REQUIRED).encode()


def good_line(enrollment_id: str) -> bytes:
    return f"{enrollment_id},photos/a.jpg,true,2026-11-20T10:00:00Z,C1".encode()


def read(path: Path) -> list[dict[str, Any]]:
    table = read_manifest(path)
    assert table.schema == RAW_MANIFEST
    return table.to_pylist()  # type: ignore[no-any-return]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_non_utf8_byte_in_a_csv_row_rejects_that_row_and_names_its_line(
    tmp_path: Path,
) -> None:
    """Regression: one 0xff byte used to stop the whole batch ('is not UTF-8 text')."""
    data = b"\n".join(
        [
            HEADER,
            good_line("E1"),
            b"E2,photos/a.jpg,true,2026-11-20T10:00:00Z,C\xff1",
            good_line("E3"),
        ]
    )
    rows = read(write(tmp_path, "m.csv", data + b"\n"))
    assert [r["row_index"] for r in rows] == [0, 1, 2]
    assert rows[0]["row_error"] is None and rows[2]["row_error"] is None
    assert rows[1]["row_error"] == "line 3: center_id is not UTF-8 text (byte 0xff at byte 1)"
    assert rows[1]["enrollment_id"] == "E2"  # kept, so the reject says which row it was
    assert rows[1]["center_id"] == "C\ufffd1"


def test_a_bad_byte_in_an_ignored_column_is_ignored(tmp_path: Path) -> None:
    data = HEADER + b",notes\n" + good_line("E1") + b",\xc0\xc1\n"
    (row,) = read(write(tmp_path, "m.csv", data))
    assert row["row_error"] is None and row["enrollment_id"] == "E1"


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    data = codecs.BOM_UTF8 + HEADER + b"\n" + good_line("E1") + b"\n"
    (row,) = read(write(tmp_path, "m.csv", data))
    assert row["enrollment_id"] == "E1" and row["row_error"] is None
    lines = codecs.BOM_UTF8 + json.dumps({"enrollment_id": "J1"}).encode() + b"\n"
    (jrow,) = read(write(tmp_path, "m.jsonl", lines))
    assert jrow["enrollment_id"] == "J1" and jrow["row_error"] is None


def test_utf16_is_not_a_table(tmp_path: Path) -> None:
    data = (HEADER + b"\n" + good_line("E1")).decode().encode("utf-16")
    with pytest.raises(ManifestError, match="lacks required column"):
        read_manifest(write(tmp_path, "m.csv", data))


def test_csv_records_keep_their_line_numbers_across_quoted_newlines_and_blank_lines(
    tmp_path: Path,
) -> None:
    data = b"\n".join(
        [
            HEADER + b",notes",
            good_line("E1") + b',"two\nlines"',
            b"",
            good_line("E2") + b",x,extra",
            good_line("E3") + b',"quote never closed',
            good_line("E4") + b",y",
        ]
    )
    rows = read(write(tmp_path, "m.csv", data + b"\n"))
    assert [r["row_error"] for r in rows] == [
        None,
        "line 5: row has 7 fields; the header has 6",
        "line 6: a quote opened on this line is never closed",
        None,
    ]
    assert rows[0]["enrollment_id"] == "E1"
    assert rows[3]["enrollment_id"] == "E4"  # not swallowed by the open quote above it


def test_a_quote_that_runs_on_past_the_record_limit_is_closed_by_force(tmp_path: Path) -> None:
    from dedup.intake.manifest_reader import MAX_RECORD_LINES

    following = [good_line(f"F{i}") for i in range(MAX_RECORD_LINES + 5)]
    data = b"\n".join([HEADER, b'E1,"photos/a.jpg,true,2026-11-20T10:00:00Z,C1', *following])
    rows = read(write(tmp_path, "m.csv", data))  # and no newline at the end
    assert rows[0]["row_error"] == "line 2: a quote opened on this line is never closed"
    assert [r["enrollment_id"] for r in rows[1:]] == [f"F{i}" for i in range(len(following))]
    assert all(r["row_error"] is None for r in rows[1:])


def test_a_csv_field_over_the_size_limit_is_one_row(tmp_path: Path) -> None:
    data = b"\n".join(
        [HEADER, good_line("E1"), b'E2,"' + b"x" * 200_000 + b'",t,t,t', good_line("E3")]
    )
    rows = read(write(tmp_path, "m.csv", data + b"\n"))
    assert [r["enrollment_id"] for r in rows] == ["E1", None, "E3"]
    assert rows[1]["row_error"].startswith("line 3: not a CSV record")


def test_nul_in_a_csv_field_is_text_for_validation_to_refuse(tmp_path: Path) -> None:
    data = HEADER + b"\n" + b"E1,photos/a.jpg\x00.png,true,2026-11-20T10:00:00Z,C1\n"
    (row,) = read(write(tmp_path, "m.csv", data))
    assert row["photo_path"] == "photos/a.jpg\x00.png" and row["row_error"] is None


def test_a_header_naming_a_column_twice_is_not_a_table(tmp_path: Path) -> None:
    data = HEADER + b",center_id\n" + good_line("E1") + b",C2\n"
    with pytest.raises(ManifestError, match="center_id more than once"):
        read_manifest(write(tmp_path, "m.csv", data))


def test_a_binary_file_named_csv_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="is it really a CSV file"):
        read_manifest(write(tmp_path, "m.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))


class TestJsonLines:
    def test_bad_lines_are_row_errors_naming_their_line(self, tmp_path: Path) -> None:
        lines = [
            json.dumps({"enrollment_id": "J1", "given_name": "Ana"}).encode(),
            b'{"enrollment_id": "J2", "given_name": "\xff"}',
            b"{not json",
            b"[1, 2]",
            b"[" * 50_000,
            b'{"enrollment_id": "J6", "sex": ["F"], "center_id": {"a": 1}}',
            b'{"enrollment_id": "J7", "given_name": "\\ud800"}',
            b'{"enrollment_id": "J8", "consent": true, "center_id": 12}',
        ]
        rows = read(write(tmp_path, "m.jsonl", b"\n".join(lines) + b"\n"))
        errors = [r["row_error"] for r in rows]
        assert errors[0] is None
        assert errors[1] == "line 2: line is not UTF-8 text (byte 0xff at byte 39)"
        assert rows[1]["enrollment_id"] == "J2"
        assert errors[2].startswith("line 3: line is not valid JSON")
        assert errors[3] == "line 4: line is not a JSON object"
        assert errors[4] == "line 5: line is not valid JSON (nested too deeply)"
        assert (
            errors[5] == "line 6: center_id holds an object, not text; sex holds a list, not text"
        )
        assert errors[6] == "line 7: given_name holds an unpaired surrogate escape, not text"
        assert errors[7] is None
        assert (rows[7]["consent"], rows[7]["center_id"]) == ("true", "12")

    def test_only_newline_ends_a_line(self, tmp_path: Path) -> None:
        """U+2028 and friends are text inside a JSON string, not line breaks."""
        name = "Ana\u2028Maria\x1cX\x85"
        data = json.dumps({"enrollment_id": "J1", "given_name": name}, ensure_ascii=False)
        (row,) = read(write(tmp_path, "m.jsonl", data.encode() + b"\r\n\r\n"))
        assert row["given_name"] == name and row["row_error"] is None

    def test_a_file_with_no_json_object_is_not_a_table(self, tmp_path: Path) -> None:
        with pytest.raises(ManifestError, match="no JSON object rows"):
            read_manifest(write(tmp_path, "m.jsonl", b"[1]\nnot json\n\xff\xfe\n"))


class TestParquet:
    def test_values_that_are_not_text_are_row_errors(self, tmp_path: Path) -> None:
        good = {
            "photo_path": "photos/a.jpg",
            "consent": True,
            "captured_at": dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC),
            "center_id": b"C1",
        }
        table = pa.table(
            {
                "enrollment_id": ["P1", "P2", "P3", "P4"],
                "photo_path": [good["photo_path"]] * 4,
                "consent": [True] * 4,
                "captured_at": pa.array([good["captured_at"]] * 4, pa.timestamp("us", tz="UTC")),
                "center_id": pa.array([b"C1", b"\xff", b"C3", b"C4"], pa.binary()),
                "given_name": pa.array([["a"], None, None, None], pa.list_(pa.string())),
                "family_name": pa.array([b"ok", b"ok", b"\xfe", b"ok"], pa.binary()).view(
                    pa.string()
                ),
                "date_of_birth": pa.array([0, 0, 0, 400_000_000_000_000_000], pa.timestamp("us")),
            }
        )
        path = tmp_path / "m.parquet"
        pq.write_table(table, path)
        rows = read(path)
        errors = [r["row_error"] for r in rows]
        assert errors[0] == "Parquet row 1: given_name holds a list, not text"
        assert errors[1] == "Parquet row 2: center_id is not UTF-8 text (byte 0xff at byte 0)"
        assert errors[2] == "Parquet row 3: family_name is not UTF-8 text (byte 0xfe at byte 0)"
        assert errors[3].startswith("Parquet row 4: date_of_birth holds a timestamp[us] value")
        assert rows[3]["enrollment_id"] == "P4"
        assert rows[0]["captured_at"] == "2026-11-20T10:00:00+00:00"
        assert rows[0]["consent"] == "true" and rows[0]["center_id"] == "C1"

    def test_a_column_named_twice_is_not_a_table(self, tmp_path: Path) -> None:
        columns = [*MANIFEST_REQUIRED, "center_id"]
        table = pa.Table.from_arrays([pa.array(["x"]) for _ in columns], names=columns)
        path = tmp_path / "m.parquet"
        pq.write_table(table, path)
        with pytest.raises(ManifestError, match="more than once"):
            read_manifest(path)


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_manifest_that_is_not_a_regular_file_is_refused_unread(tmp_path: Path, kind: str) -> None:
    import os

    path = tmp_path / "m.csv"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    with pytest.raises(ManifestError, match="not a regular file"):
        read_manifest(path)
