"""Reading a batch manifest (CSV, JSON Lines, Parquet) into rows of text, whatever its bytes.

A manifest comes from hundreds of centres, and one bad row must cost one reject, never the
night. So the readers split the file into rows first and judge each row's cells apart:

- a cell that is not UTF-8, a JSON line that does not parse or is not an object, a value
  Parquet cannot give as text (a list, a struct, binary that is not UTF-8, a timestamp out of
  range), a CSV record with the wrong number of fields: the row keeps a ``row_error`` naming
  its line (or Parquet row) and the problem, and becomes an ``invalid_row`` reject;
- only a file that cannot be read as a table at all stops the run with a ``ManifestError``:
  it is missing, its extension is unknown, it has no header or lacks a required column, or
  it is not the format its name claims.

A UTF-8 byte-order mark at the start of a CSV or JSON Lines file is accepted and dropped.
Every value leaves here as valid Unicode text (or None), so Arrow, Spark, Delta and the
review database can all store it; what validation makes of the text is
``dedup.intake.manifest_rules``'s.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import decimal
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dedup.contracts.schemas import MANIFEST_COLUMNS, MANIFEST_REQUIRED, RAW_MANIFEST
from dedup.errors import ManifestError

# Longest error text kept for one row, so a hostile row cannot bloat the rejects table.
_ERROR_CHARS = 300
_PARQUET_BATCH_ROWS = 4096


class NotText(Exception):
    """A cell that cannot be given as text; ``kept`` is what can be shown of it (or None)."""

    def __init__(self, problem: str, kept: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.kept = kept


# Any surrogate: an undecodable byte carried by ``surrogateescape`` (U+DC80 to U+DCFF), or a
# lone ``\\udXXX`` escape from JSON. Searched with a compiled pattern: this runs on every cell.
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _not_utf8(byte: int, offset: int, kept: str) -> NotText:
    return NotText(f"is not UTF-8 text (byte 0x{byte:02x} at byte {offset})", kept)


def _replaced(text: str) -> str:
    """``text`` with every surrogate (an escaped byte, or a lone JSON escape) shown as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _surrogate_problem(text: str) -> NotText:
    escaped = _ESCAPED_BYTE.search(text)
    if escaped is None:
        return NotText("holds an unpaired surrogate escape, not text", _replaced(text))
    offset = len(text[: escaped.start()].encode("utf-8", "surrogateescape"))
    return _not_utf8(ord(escaped.group()) - 0xDC00, offset, _replaced(text))


def cell_text(value: Any) -> str | None:
    """A cell as the operator's text: None for missing, ISO forms for dates, or ``NotText``."""
    if value is None:
        return None
    if isinstance(value, NotText):  # found unreadable earlier (a Parquet value)
        raise value
    if isinstance(value, str):
        if _SURROGATE.search(value) is not None:
            raise _surrogate_problem(value)
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(value[exc.start], exc.start, value.decode("utf-8", "replace")) from exc
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    kinds: dict[type, str] = {dict: "an object", list: "a list", tuple: "a pair"}
    raise NotText(f"holds {kinds.get(type(value), type(value).__name__)}, not text")


def _text_row(cells: dict[str, Any], where: str) -> dict[str, Any]:
    """The manifest columns of one row as text; problems go into ``row_error``."""
    row: dict[str, Any] = {}
    problems: list[str] = []
    for name in MANIFEST_COLUMNS:
        try:
            row[name] = cell_text(cells.get(name))
        except NotText as bad:
            row[name] = bad.kept
            problems.append(f"{name} {bad.problem}")
    if problems:
        row["row_error"] = f"{where}: {'; '.join(problems)}"[:_ERROR_CHARS]
    return row


def _row_error(where: str, problem: str) -> dict[str, Any]:
    return {"row_error": f"{where}: {problem}"[:_ERROR_CHARS]}


def _check_header(names: list[str], path: Path, kind: str) -> None:
    present = set(names)
    missing = [c for c in MANIFEST_REQUIRED if c not in present]
    if missing:
        raise ManifestError(
            f"manifest {path} lacks required column(s): {', '.join(missing)} "
            f"(is it really a {kind} file with a header?)"
        )
    repeated = sorted(
        n for n, count in Counter(names).items() if count > 1 and n in MANIFEST_COLUMNS
    )
    if repeated:
        raise ManifestError(
            f"manifest {path} names column(s) {', '.join(repeated)} more than once: "
            "which one is meant cannot be told"
        )


def _without_bom(data: bytes) -> bytes:
    return data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first >= last else f"lines {first} to {last}"


# Lines one CSV record may span (quoted newlines). A quote that is never closed would otherwise
# swallow every later row into one field; past this many lines the quote is taken as a mistake.
MAX_RECORD_LINES = 64
# Fed after the last line: no decoded text can hold this lone surrogate, so a record that
# contains it ran to the end of the file inside a quote.
_END = "\udfff"


class _RunOn(Exception):
    """A record has spanned ``MAX_RECORD_LINES`` lines without ending."""


class _Lines:
    """Physical lines for ``csv.reader``, counting where each record starts and ends."""

    def __init__(self, lines: list[str], start: int) -> None:
        self.lines = lines
        self.next_index = start
        self.record_start = start

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.next_index >= len(self.lines):
            raise StopIteration
        if self.next_index - self.record_start >= MAX_RECORD_LINES:
            raise _RunOn
        self.next_index += 1
        return self.lines[self.next_index - 1]


def _csv_records(lines: list[str], start: int, names: list[str]) -> Iterator[dict[str, Any]]:
    """A row for every record from line index ``start`` (a row error where it is not one)."""
    index = start
    while index < len(lines):
        source = _Lines(lines, index)
        reader = csv.reader(source)
        index = len(lines)
        while True:
            source.record_start = source.next_index
            first = source.next_index + 1  # 1-based line number
            try:
                cells = next(reader)
            except StopIteration:
                break
            except _RunOn:
                cells = [_END]
            except csv.Error as exc:
                yield _row_error(_lines(first, source.next_index), f"not a CSV record ({exc})")
                # the reader's state is unknown: start afresh on the next line
                index = max(source.next_index, source.record_start + 1)
                break
            if cells == [_END] and source.next_index == len(lines) and first == len(lines):
                return  # the end marker itself
            if any(_END in cell for cell in cells):
                yield _row_error(f"line {first}", "a quote opened on this line is never closed")
                index = first  # the lines it swallowed are read again, as rows of their own
                break
            if cells:
                where = _lines(first, source.next_index)
                if len(cells) != len(names):
                    problem = f"row has {len(cells)} fields; the header has {len(names)}"
                    yield _row_error(where, problem)
                else:
                    yield _text_row(dict(zip(names, cells, strict=True)), where)


def csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    """CSV with a header row. A record may span lines inside quotes; blank lines are skipped."""
    text = _without_bom(path.read_bytes()).decode("utf-8", "surrogateescape")
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ManifestError(f"manifest {path}: the header row cannot be read: {exc}") from exc
    if header is None:
        raise ManifestError(f"manifest {path} is empty: it needs a header row")
    names = [h.strip() for h in header]
    _check_header(names, path, "CSV")
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n"
    lines.append(_END + "\n")
    yield from _csv_records(lines, reader.line_num, names)


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except RecursionError:
        return _row_error(where, "line is not valid JSON (nested too deeply)")
    except ValueError as exc:
        problem = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return _row_error(where, f"line is not valid JSON: {problem}")
    if not isinstance(parsed, dict):
        return _row_error(where, "line is not a JSON object")
    return _text_row(parsed, where)


def jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    """One JSON object per line (``\\n`` or ``\\r\\n``); blank lines are skipped."""
    objects = 0
    for number, raw in enumerate(_without_bom(path.read_bytes()).split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r")
        if not raw.strip(b" \t\r"):
            continue
        where = f"line {number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            row = _json_object(raw.decode("utf-8", "replace"), where)
            problem = f"line is not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte {exc.start})"
            row["row_error"] = f"{where}: {problem}"
        else:
            row = _json_object(text, where)
        objects += raw.lstrip(b" \t").startswith(b"{")
        yield row
    if not objects:
        raise ManifestError(f"manifest {path} holds no JSON object rows")


def _arrow_cells(array: pa.Array) -> list[Any]:
    """The values of one column as Python objects; a value that cannot be one is ``NotText``."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_string_view(kind):
        array = array.cast(pa.binary())  # bytes as stored: UTF-8 is checked per value
    elif pa.types.is_large_string(kind):
        array = array.cast(pa.large_binary())
    try:
        values: list[Any] = array.to_pylist()
        return values
    except (pa.ArrowException, ValueError, OverflowError, TypeError):
        pass
    cells: list[Any] = []
    for index in range(len(array)):
        try:
            cells.append(array[index].as_py())
        except (pa.ArrowException, ValueError, OverflowError, TypeError) as exc:
            cells.append(NotText(f"holds a {kind} value Python cannot represent ({exc})"[:120]))
    return cells


def parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    """A Parquet file, read a record batch at a time; only the manifest's columns are read."""
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
    except (pa.ArrowException, OSError) as exc:
        raise ManifestError(f"manifest {path} is not a readable Parquet file: {exc}") from exc
    _check_header(names, path, "Parquet")
    present = [name for name in MANIFEST_COLUMNS if name in names]
    number = 0
    try:
        for batch in parquet.iter_batches(columns=present, batch_size=_PARQUET_BATCH_ROWS):
            columns = {name: _arrow_cells(batch.column(name)) for name in present}
            for index in range(batch.num_rows):
                number += 1
                cells = {name: values[index] for name, values in columns.items()}
                yield _text_row(cells, f"Parquet row {number}")
    except (pa.ArrowException, OSError) as exc:
        raise ManifestError(
            f"manifest {path}: its Parquet data cannot be read from row {number + 1} on: {exc}"
        ) from exc


_READERS = {
    ".csv": csv_rows,
    ".jsonl": jsonl_rows,
    ".ndjson": jsonl_rows,
    ".parquet": parquet_rows,
}


def _rows_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    columns: dict[str, list[Any]] = {field.name: [] for field in RAW_MANIFEST}
    for index, row in enumerate(rows):
        columns["row_index"].append(index)
        for name in MANIFEST_COLUMNS:
            columns[name].append(row.get(name))
        columns["row_error"].append(row.get("row_error"))
    return pa.Table.from_pydict(columns, schema=RAW_MANIFEST)


def read_manifest(path: Path) -> pa.Table:
    """Every row of the manifest, as text, with its 0-based ``row_index`` (``RAW_MANIFEST``)."""
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist or is not a regular file")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ManifestError(
            f"manifest {path}: unknown format {path.suffix!r}; use one of {', '.join(_READERS)}"
        )
    try:
        return _rows_to_table(reader(path))
    except OSError as exc:
        raise ManifestError(f"manifest {path} cannot be read: {exc.strerror or exc}") from exc
