"""Hypothesis strategies for hostile batches: manifests with arbitrary bytes and Unicode in
every field, in every format, and arbitrary things where the photos should be.

Each generated row is exactly one record of its manifest (quoted CSV fields, one JSON line,
one Parquet row), so a test can hold the stage job to "every row, exactly once".
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from dedup.contracts.reasons import RejectReason as R
from dedup.contracts.schemas import MANIFEST_COLUMNS
from dedup.intake.manifest_reader import MAX_RECORD_LINES

# Examples per property are bounded for CI; DEDUP_HYPOTHESIS_SCALE=10 runs ten times as many.
SCALE = int(os.environ.get("DEDUP_HYPOTHESIS_SCALE", "1"))
# Every reason a hostile row may get: internal_error would be a fault, never a verdict.
DOCUMENTED = {reason.value for reason in R} - {R.INTERNAL_ERROR.value}

# Text as an operator's systems might send it: any code point but lone surrogates (which no
# encoder can write), with control characters, markup and spreadsheet formulas made likely.
_ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_TRICKY = st.sampled_from(
    [
        "",
        " ",
        '=HYPERLINK("http://example.invalid","x")',
        "+cmd|' /C calc'!A0",
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(2)>",
        "a\x00b",
        "line\nbreak",
        "tab\there",
        "\u202eevil",
        "Zoë Ñandú 张伟 محمد",
        "\ufeffbom",
        "x" * 300,
        "../../etc/passwd",
        "ja\u2028va",
    ]
)
# Bytes that are not UTF-8 on their own: a lone continuation byte, an overlong form, an encoded
# surrogate, a truncated sequence, Latin-1.
_BAD_BYTES = st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"caf\xe9"])

_GOOD = {
    "enrollment_id": st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True),
    "consent": st.sampled_from(["true", "TRUE", "yes", "1", "false", "", "maybe"]),
    "captured_at": st.sampled_from(
        [
            "2026-11-20T10:00:00+02:00",
            "2026-11-20T10:00:00",
            "2999-11-20T10:00:00Z",
            "1500-01-01T00:00:00Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:59:59-12:00",
            "yesterday",
        ]
    ),
    "center_id": st.sampled_from(["C-01", "CTR 2", "x" * 65]),
    "given_name": st.sampled_from(["Ada", "Grace"]),
    "family_name": st.sampled_from(["Lovelace", "Hopper"]),
    "date_of_birth": st.sampled_from(["1990-12-10", "0001-01-01", "9999-12-31", "10/12/1990"]),
    "sex": st.sampled_from(["F", "M", "X"]),
}

# A cell: None (absent), text, or bytes that are not UTF-8 (CSV and JSON Lines only).
Cell = str | bytes | None


def cells(name: str, *, with_bytes: bool = True) -> st.SearchStrategy[Cell]:
    """A value for column ``name``: often well-formed, else anything (bytes only if asked)."""
    good = _GOOD.get(name, st.just("photos/p0.jpg"))
    choices: list[st.SearchStrategy[Cell]] = [good, good, _ANY_TEXT, _TRICKY, st.none()]
    if with_bytes:
        broken = st.builds(
            lambda t, b, u: t + b + u, _ANY_TEXT.map(str.encode), _BAD_BYTES, st.binary(max_size=3)
        )
        choices.append(broken)
    return st.one_of(choices)


# What can be where a photo should be. Each kind names the reason it must get, or None where
# any documented verdict will do (a mutated JPEG may still hold a face).
PHOTO_KINDS: dict[str, R | None] = {
    "portrait": None,
    "mutated_portrait": None,
    "truncated_portrait": None,
    "fifo": R.PHOTO_UNREADABLE,
    "socket": R.PHOTO_UNREADABLE,
    "directory": R.PHOTO_UNREADABLE,
    "link_to_device": R.PHOTO_OUTSIDE_BATCH,
    "link_out_of_batch": R.PHOTO_OUTSIDE_BATCH,
    "link_loop": R.PHOTO_UNREADABLE,
    "sparse_huge": R.IMAGE_TOO_LARGE,
    "empty": R.UNDECODABLE_IMAGE,
    "random_bytes": R.UNDECODABLE_IMAGE,
    "lying_png_header": None,
    "lying_jpeg_header": None,
    "missing": R.PHOTO_MISSING,
    "parent_path": R.PHOTO_OUTSIDE_BATCH,
}


@dataclass(frozen=True)
class PhotoSpec:
    kind: str
    data: bytes = b""  # random bytes, or the mutation: (position, value) pairs packed
    cut: float = 1.0  # share of the portrait kept by a truncation


photo_specs = st.builds(
    PhotoSpec,
    kind=st.sampled_from(sorted(PHOTO_KINDS)),
    data=st.binary(max_size=64),
    cut=st.floats(0.0, 0.99),
)


def _png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def make_photo(batch: Path, index: int, spec: PhotoSpec, portrait: bytes) -> str:
    """Put what ``spec`` says at a path in ``batch``; the manifest's photo_path for it."""
    photos = batch / "photos"
    photos.mkdir(exist_ok=True)
    name = f"p{index}.jpg"
    target = photos / name
    kind = spec.kind
    if kind == "portrait":
        target.write_bytes(portrait)
    elif kind == "mutated_portrait":
        mutated = bytearray(portrait)
        for offset in range(0, len(spec.data) - 1, 2):
            mutated[(spec.data[offset] * 257 + spec.data[offset + 1]) % len(mutated)] ^= 0xFF
        target.write_bytes(bytes(mutated))
    elif kind == "truncated_portrait":
        target.write_bytes(portrait[: int(len(portrait) * spec.cut)])
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "socket":
        here = os.getcwd()
        os.chdir(photos)  # AF_UNIX paths are short: bind relative to the folder
        try:
            server = socket.socket(socket.AF_UNIX)
            server.bind(name)
            server.close()  # the socket file stays, with nobody listening
        finally:
            os.chdir(here)
    elif kind == "directory":
        target.mkdir()
    elif kind == "link_to_device":
        target.symlink_to("/dev/zero")
    elif kind == "link_out_of_batch":
        outside = batch.parent / f"{batch.name}-outside.jpg"
        outside.write_bytes(portrait)
        target.symlink_to(outside)
    elif kind == "link_loop":
        target.symlink_to(name)
    elif kind == "sparse_huge":
        with target.open("wb") as handle:
            handle.truncate(64 * 1024**3)
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "random_bytes":
        # Never a valid image header: JPEG, PNG, TIFF, WebP, BMP and JPEG 2000 all need one.
        target.write_bytes(b"\x00not-an-image" + spec.data)
    elif kind == "lying_png_header":
        side = 1 + int.from_bytes(spec.data[:4].ljust(4, b"\0"), "big") % 100_000
        target.write_bytes(_png_header(side, side) + spec.data)
    elif kind == "lying_jpeg_header":
        target.write_bytes(b"\xff\xd8\xff\xe0" + spec.data)
    elif kind == "missing":
        pass
    elif kind == "parent_path":
        return f"photos/../../{name}"
    else:  # pragma: no cover - the strategy draws from PHOTO_KINDS
        raise ValueError(kind)
    return f"photos/{name}"


@dataclass(frozen=True)
class HostileRow:
    cells: dict[str, Cell]
    photo: PhotoSpec
    # True: keep the generated photo_path; False: a generated cell stands in its place.
    real_photo_path: bool


hostile_rows = st.builds(
    HostileRow,
    cells=st.fixed_dictionaries({name: cells(name) for name in MANIFEST_COLUMNS}),
    photo=photo_specs,
    real_photo_path=st.booleans(),
)


def _csv_cell(value: Cell) -> bytes:
    if value is None:
        return b""
    raw = value if isinstance(value, bytes) else value.encode("utf-8")
    return b'"' + raw.replace(b'"', b'""') + b'"'


def csv_record(row: dict[str, Cell]) -> bytes:
    """One row as a CSV record, every field quoted, without its line end."""
    return b",".join(_csv_cell(row[name]) for name in MANIFEST_COLUMNS)


def csv_record_lines(row: dict[str, Cell]) -> int:
    """How many lines the row's CSV record spans (quoted line breaks included)."""
    text = (csv_record(row) + b"\n").decode("utf-8", "replace")
    return len(io.StringIO(text, newline="").readlines())


def csv_fits(rows: list[dict[str, Cell]]) -> bool:
    """Whether every record stays within the lines one CSV record may span."""
    return all(csv_record_lines(row) <= MAX_RECORD_LINES for row in rows)


def encode_manifest(rows: list[dict[str, Cell]], fmt: str, path: Path, bom: bool) -> Path:
    """Write ``rows`` as a manifest of format ``fmt``: one record per row, whatever the cells."""
    target = path.with_suffix(f".{fmt}")
    prefix = b"\xef\xbb\xbf" if bom else b""
    if fmt == "csv":
        header = ",".join(MANIFEST_COLUMNS).encode()
        records = [csv_record(row) for row in rows]
        target.write_bytes(prefix + b"\n".join([header, *records]) + b"\n")
    elif fmt == "jsonl":
        lines = []
        for row in rows:
            if any(isinstance(v, bytes) for v in row.values()):
                # A line with bytes that are not UTF-8 inside its strings.
                parts = [
                    json.dumps(n).encode()
                    + b": "
                    + (
                        b'"' + v.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
                        if isinstance(v, bytes)
                        else json.dumps(v).encode()
                    )
                    for n, v in row.items()
                ]
                line = b"{" + b", ".join(parts) + b"}"
                lines.append(line.replace(b"\n", b"\\n").replace(b"\r", b"\\r"))
            else:  # raw U+2028 and friends stay in the line: only \n ends it
                lines.append(json.dumps(row, ensure_ascii=False).encode())
        target.write_bytes(prefix + b"\n".join(lines) + b"\n")
    elif fmt == "parquet":
        columns: dict[str, pa.Array] = {}
        for name in MANIFEST_COLUMNS:
            values = [row[name] for row in rows]
            if any(isinstance(v, bytes) for v in values):
                columns[name] = pa.array(
                    [v.encode() if isinstance(v, str) else v for v in values], pa.binary()
                )
            else:
                columns[name] = pa.array(values, pa.string())
        pq.write_table(pa.table(columns), target)
    else:  # pragma: no cover
        raise ValueError(fmt)
    return target


def write_batch(
    folder: Path, rows: list[HostileRow], fmt: str, bom: bool, portrait: bytes
) -> tuple[Path, list[dict[str, Cell]]]:
    """A batch folder with its photos and manifest; the cells as written, row by row."""
    folder.mkdir(parents=True)
    written: list[dict[str, Cell]] = []
    for index, row in enumerate(rows):
        cells_of_row: dict[str, Cell] = dict(row.cells)
        photo_path = make_photo(folder, index, row.photo, portrait)
        if row.real_photo_path:
            cells_of_row["photo_path"] = photo_path
        written.append(cells_of_row)
    return encode_manifest(written, fmt, folder / "manifest", bom), written


@contextmanager
def fails_if_blocked(seconds: int, what: str) -> Iterator[None]:
    """Turn a call that blocks for ``seconds`` into a failed test, not a hung suite (SIGALRM
    interrupts even a system call blocked on a FIFO)."""

    def blocked(signum: int, frame: object) -> None:
        raise AssertionError(f"{what} blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
