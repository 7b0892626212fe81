"""A demo batch: real portraits, re-captures, awkward formats and hostile rows, with answers.

The stage job is only trustworthy if it is shown every kind of row a registry operator will
send, so the demo batch holds, next to good enrollments, one or more rows for every reject
reason the stage job can give in a single batch (all but ``already_enrolled``, which needs an
earlier batch, and ``internal_error``, which no input should cause), each labelled in
``expected.json`` with the status and reason it must get.

Everything is derived from the pinned portraits (``dedup.demo.portraits``) and a seed, so the
same seed gives byte-identical files: a test can compare two builds, and a report can quote
row numbers. No timestamps or source metadata are written into the generated files.

The photo files themselves, with the geometry they were measured with, are
``dedup.demo.photos``.

    >>> batch = build_demo_batch(Path("demo"), fetch_portraits())  # doctest: +SKIP
    >>> batch.expected_reasons()[0]                                 # doctest: +SKIP
    'photo_missing'
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import numpy as np

from dedup.contracts.reasons import RejectReason as R
from dedup.contracts.schemas import MANIFEST_COLUMNS, STATUS_REJECTED, STATUS_STAGED
from dedup.demo.photos import BOMB_SIDE, USABLE_PORTRAITS, PhotoMaker, png_bomb
from dedup.demo.portraits import PORTRAIT_IDENTITIES

ManifestFormat = Literal["csv", "parquet", "jsonl"]

_GIVEN = ("Amina", "Bruno", "Chen", "Dara", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas")
_FAMILY = ("Okafor", "Silva", "Wang", "Novak", "Kaya", "Haddad", "Mensah", "Sato", "Costa", "Berg")
_SEX = ("F", "M", "X")
_CENTERS = (("CTR-01", 0), ("CTR-02", 330), ("CTR-03", -180))  # center id, UTC offset (min)
_CAPTURE_START = datetime(2024, 5, 1, 8, 0)


@dataclass(frozen=True)
class ExpectedRow:
    """What the stage job must conclude for one manifest row."""

    row_index: int
    enrollment_id: str
    photo_path: str
    expected_status: str  # "staged" or "rejected"
    expected_reason: str | None  # a RejectReason value when rejected
    person: str | None  # identity label of the one person in the photo, if any
    kind: str  # how the row was made: "original", "recapture", "cmyk", "bomb", ...


@dataclass(frozen=True)
class DemoBatch:
    folder: Path
    manifest: Path
    expected: tuple[ExpectedRow, ...]

    def expected_reasons(self) -> dict[int, str | None]:
        """row_index -> reason code, or None for rows that must be staged."""
        return {row.row_index: row.expected_reason for row in self.expected}


@dataclass(frozen=True)
class _Row:
    kind: str
    photo_path: str
    person: str | None
    reason: R | None = None
    enrollment_id: str | None = None  # None: a well-formed id is assigned in row order
    consent: str = "true"
    captured_at: str | None = None  # None: a well-formed timestamp is assigned
    center_id: str | None = None  # None: a center is drawn


def build_demo_batch(
    out_dir: Path,
    portraits_dir: Path,
    *,
    recaptures: int = 3,
    seed: int = 0,
    hostile: bool = True,
    manifest_format: ManifestFormat = "csv",
    originals: Sequence[str] = USABLE_PORTRAITS,
    recaptured: Sequence[str] | None = None,
    conversions: bool = True,
) -> DemoBatch:
    """Write a demo batch folder (``photos/``, ``manifest.<ext>``, ``expected.json``).

    The batch holds the ``originals`` (portrait file names), ``recaptures`` re-captures of
    each of ``recaptured`` (default: the originals), the converted formats when
    ``conversions``, and the hostile rows when ``hostile``.

    The folder is built beside ``out_dir`` and renamed into place, so an interrupted build
    never leaves something that looks like a batch. ``out_dir`` must not exist or be empty.
    One hostile row needs a file outside the batch: it goes to ``<out_dir>-outside/``.
    """
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; choose a new folder for the demo batch")
    work = out_dir.parent / f".{out_dir.name}.building"
    if work.exists():  # left by an interrupted build
        shutil.rmtree(work)
    (work / "photos").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    maker = PhotoMaker(portraits_dir, work / "photos", rng)
    again = originals if recaptured is None else recaptured
    rows = _good_rows(maker, recaptures, originals, again)
    if conversions:
        rows += _conversion_rows(maker)
    if hostile:
        rows += _hostile_rows(maker, out_dir, seed)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    records, expected = _fill_rows(rows, rng, seed)
    manifest_name = f"manifest.{manifest_format}"
    _write_manifest(work / manifest_name, records, manifest_format)
    (work / "expected.json").write_text(
        json.dumps([asdict(row) for row in expected], indent=2) + "\n", encoding="utf-8"
    )
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(work, out_dir)
    return DemoBatch(folder=out_dir, manifest=out_dir / manifest_name, expected=tuple(expected))


def read_demo_batch(folder: Path) -> DemoBatch:
    """Load a batch written by ``build_demo_batch`` (its manifest and its answers)."""
    manifests = sorted(Path(folder).glob("manifest.*"))
    if len(manifests) != 1:
        raise FileNotFoundError(f"{folder} holds {len(manifests)} manifest files, expected 1")
    raw = json.loads((Path(folder) / "expected.json").read_text(encoding="utf-8"))
    return DemoBatch(Path(folder), manifests[0], tuple(ExpectedRow(**item) for item in raw))


def _good_rows(
    maker: PhotoMaker, recaptures: int, originals: Sequence[str], recaptured: Sequence[str]
) -> list[_Row]:
    rows: list[_Row] = []
    for name in USABLE_PORTRAITS:
        person = PORTRAIT_IDENTITIES[name]
        if name in originals:
            rows.append(_Row("original", maker.copy(name), person))
        if name in recaptured:
            rows += [
                _Row("recapture", maker.recapture(name, k), person)
                for k in range(1, recaptures + 1)
            ]
    return rows


# The demo's two nights: the first seeds the gallery with one photo of each person (and shows
# every way a row can be rejected); the second brings the other photos and re-captures of
# everyone, which the search must catch against the gallery and within the batch.
FIRST_NIGHT = ("obama.jpg", "biden.jpg")


def build_demo_nights(root: Path, portraits_dir: Path) -> tuple[DemoBatch, DemoBatch]:
    """The two nights' batches, under ``root/<batch id>`` (``demo-0001``, ``demo-0002``)."""
    first = build_demo_batch(
        root / "demo-0001", portraits_dir, recaptures=0, seed=0,
        originals=FIRST_NIGHT, conversions=False,
    )  # fmt: skip
    later = tuple(name for name in USABLE_PORTRAITS if name not in FIRST_NIGHT)
    second = build_demo_batch(
        root / "demo-0002", portraits_dir, recaptures=1, seed=1, hostile=False,
        originals=later, recaptured=USABLE_PORTRAITS,
    )  # fmt: skip
    return first, second


def _conversion_rows(maker: PhotoMaker) -> list[_Row]:
    """Formats a capture device may send that must still stage once converted."""
    cmyk = maker.save(maker.crop("obama3.jpg").convert("CMYK"), "cmyk-obama3.jpg")
    grey = maker.save(maker.crop("biden.jpg").convert("L"), "gray-biden.jpg")
    return [
        _Row("cmyk", cmyk, "obama"),
        _Row("grayscale", grey, "biden"),
        _Row("gray16", maker.gray16("obama2.jpg"), "obama"),
        _Row("rgba", maker.copy("32bit.png", "rgba-32bit.png"), "obama"),
        _Row("exif_rotated", maker.exif_rotated("obama.jpg"), "obama"),
    ]


def _hostile_rows(maker: PhotoMaker, out_dir: Path, seed: int) -> list[_Row]:
    """One or more rows per way a row can go wrong, in the order of the reason codes."""
    ob, bi, ob3 = "photos/obama.jpg", "photos/biden.jpg", "photos/obama3.jpg"
    dup = f"demo-s{seed}-dup"
    jpeg = (maker.portraits / "obama.jpg").read_bytes()
    notes = b"enrollment notes: photo to follow\n"
    q = R.QUALITY_BELOW_THRESHOLD
    return [
        _Row("id_with_space", ob, "obama", R.INVALID_ROW, enrollment_id=f"demo s{seed} 1"),
        _Row("id_with_bang", bi, "biden", R.INVALID_ROW, enrollment_id=f"demo-s{seed}!"),
        _Row("id_too_long", ob3, "obama", R.INVALID_ROW, enrollment_id="d" * 65),
        _Row("bad_captured_at", ob, "obama", R.INVALID_ROW, captured_at="yesterday"),
        _Row("captured_in_2999", bi, "biden", R.INVALID_ROW, captured_at="2999-11-20T10:00:00Z"),
        _Row("nul_in_photo_path", "photos/obama.jpg\x00.png", None, R.INVALID_ROW),
        _Row("empty_center_id", bi, "biden", R.INVALID_ROW, center_id=""),
        _Row("consent_false", ob, "obama", R.CONSENT_MISSING, consent="false"),
        _Row("consent_empty", bi, "biden", R.CONSENT_MISSING, consent=""),
        _Row("duplicate_id", ob3, "obama", R.DUPLICATE_IN_BATCH, enrollment_id=dup),
        _Row("duplicate_id", bi, "biden", R.DUPLICATE_IN_BATCH, enrollment_id=dup),
        _Row("parent_path", "../outside.jpg", None, R.PHOTO_OUTSIDE_BATCH),
        _Row("absolute_path", "/etc/hostname", None, R.PHOTO_OUTSIDE_BATCH),
        _Row("symlink_out", maker.link_outside(out_dir), "obama", R.PHOTO_OUTSIDE_BATCH),
        _Row("missing", "photos/does-not-exist.jpg", None, R.PHOTO_MISSING),
        _Row("directory", maker.directory("folder.jpg"), None, R.PHOTO_UNREADABLE),
        _Row("bomb", maker.write_bytes(png_bomb(BOMB_SIDE), "bomb.png"), None, R.IMAGE_TOO_LARGE),
        _Row(
            "truncated",
            maker.write_bytes(jpeg[: len(jpeg) * 2 // 5], "truncated.jpg"),
            "obama",
            R.UNDECODABLE_IMAGE,
        ),
        _Row("text_as_jpg", maker.write_bytes(notes, "notes.jpg"), None, R.UNDECODABLE_IMAGE),
        _Row(
            "random_bytes",
            maker.write_bytes(maker.rng.bytes(4096), "random.png"),
            None,
            R.UNDECODABLE_IMAGE,
        ),
        _Row("tiny", maker.tiny(), "obama", R.IMAGE_TOO_SMALL),
        _Row("no_face", maker.no_face(), None, R.NO_FACE),
        _Row("two_faces", maker.two_faces(), None, R.SEVERAL_FACES),
        _Row("small_face", maker.small_face(), "obama", R.FACE_TOO_SMALL),
        _Row("blurred", maker.blurred(), "obama", q),
        _Row("dark", maker.dark(), "obama", q),
        _Row("partial_face", maker.copy("obama_partial_face.jpg", "partial-face.jpg"), "obama", q),
        _Row(
            "partial_face", maker.copy("obama_partial_face2.jpg", "partial-face2.jpg"), "obama", q
        ),
    ]


def _fill_rows(
    rows: list[_Row], rng: np.random.Generator, seed: int
) -> tuple[list[dict[str, str]], list[ExpectedRow]]:
    """Give every row its manifest fields (ids, times, display fields) in row order."""
    records: list[dict[str, str]] = []
    expected: list[ExpectedRow] = []
    for index, row in enumerate(rows):
        center, offset = _CENTERS[int(rng.integers(len(_CENTERS)))]
        zone = timezone(timedelta(minutes=offset))
        captured = (_CAPTURE_START + timedelta(minutes=7 * index)).replace(tzinfo=zone)
        birth = date(1950, 1, 1) + timedelta(days=int(rng.integers(0, 20_000)))
        enrollment_id = row.enrollment_id or f"demo-s{seed}-{index:04d}"
        record = {
            "enrollment_id": enrollment_id,
            "photo_path": row.photo_path,
            "consent": row.consent,
            "captured_at": row.captured_at or captured.isoformat(),
            "center_id": center if row.center_id is None else row.center_id,
            "given_name": _GIVEN[int(rng.integers(len(_GIVEN)))],
            "family_name": _FAMILY[int(rng.integers(len(_FAMILY)))],
            "date_of_birth": birth.isoformat(),
            "sex": _SEX[int(rng.integers(len(_SEX)))],
        }
        records.append({name: record[name] for name in MANIFEST_COLUMNS})
        expected.append(
            ExpectedRow(
                row_index=index,
                enrollment_id=enrollment_id,
                photo_path=row.photo_path,
                expected_status=STATUS_STAGED if row.reason is None else STATUS_REJECTED,
                expected_reason=None if row.reason is None else row.reason.value,
                person=row.person,
                kind=row.kind,
            )
        )
    return records, expected


def _write_manifest(path: Path, records: list[dict[str, str]], fmt: ManifestFormat) -> None:
    if fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(records)
    elif fmt == "jsonl":
        lines = [json.dumps(record, ensure_ascii=False) for record in records]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([pa.field(name, pa.string()) for name in MANIFEST_COLUMNS])
        columns = {name: [record[name] for record in records] for name in MANIFEST_COLUMNS}
        pq.write_table(pa.table(columns, schema=schema), path)
    else:
        raise ValueError(f"unknown manifest format {fmt!r}; use csv, parquet or jsonl")
