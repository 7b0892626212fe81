"""A demo batch: real portraits, re-captures, awkward formats and hostile rows, with answers.

The stage job is only trustworthy if it is shown every kind of row a registry operator will
send, so the demo batch holds, next to good enrollments, one or more rows for every reject
reason the stage job can give in a single batch (all but ``already_enrolled``, which needs an
earlier batch, and ``internal_error``, which no input should cause), each labelled in
``expected.json`` with the status and reason it must get.

Everything is derived from the pinned portraits (``dedup.demo.portraits``) and a seed, so the
same seed gives byte-identical files: a test can compare two builds, and a report can quote
row numbers. No timestamps or source metadata are written into the generated files.

Geometry is fixed, not searched for at build time: face boxes and scale factors below were
measured once with dlib's frontal detector (upsample 1, photo downscaled to a 1024 px long
side, as the stage job does), so a build needs no detector and takes a few seconds.
``tests/unit/test_demo_batch.py`` re-measures them with dlib, so a drift is caught.

    >>> batch = build_demo_batch(Path("demo"), fetch_portraits())  # doctest: +SKIP
    >>> batch.expected_reasons()[0]                                 # doctest: +SKIP
    'photo_missing'
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import zlib
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from dedup.contracts.reasons import RejectReason as R
from dedup.contracts.schemas import MANIFEST_COLUMNS, STATUS_REJECTED, STATUS_STAGED
from dedup.demo.portraits import PORTRAIT_IDENTITIES

ManifestFormat = Literal["csv", "parquet", "jsonl"]
Box = tuple[int, int, int, int]  # left, top, right, bottom in the portrait's own pixels

# Measured face boxes (dlib, upsample 1, long side 1024, scaled back). Scores: obama 1.90,
# obama2 1.68, obama3 1.33, biden 1.36, obama_partial_face2 0.92, obama_partial_face 0.91.
FACE_BOXES: dict[str, Box] = {
    "obama.jpg": (378, 158, 625, 405),
    "obama2.jpg": (166, 312, 428, 573),
    "obama3.jpg": (642, 285, 936, 579),
    "biden.jpg": (433, 211, 766, 545),
    "obama_partial_face2.jpg": (383, 154, 590, 361),  # 39 px right of the 551 px frame
    "obama_partial_face.jpg": (-62, 158, 212, 405),  # 62 px left of the frame
}
# Each holds exactly one face scoring >= 0.3 with its box inside the frame: the photos good
# rows are made from. Both obama_partial_face photos also hold one face scoring >= 0.3, but
# 19% and 23% of its box lie outside the photo (quality.max_box_outside_fraction is 0.05), so
# they are quality rejects, not good rows.
USABLE_PORTRAITS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")

# obama.jpg resized by this factor onto a 640 x 640 canvas: dlib finds the face with a
# 44 px box (score 2.0), under detection.min_face_px = 60. Factors 40/248 and 48/248 give
# 44 and 53 px, so the row does not sit on a pyramid-level edge.
SMALL_FACE_SCALE = 44 / 247.6
# obama2.jpg blurred with this Gaussian radius: one face, score 0.97, box 315 px wide; the
# Laplacian variance of the face region falls from 278 to 2.
BLUR_RADIUS = 12.0
# obama.jpg at this brightness: one face, score 1.39; face mean grey about 21 (of 255).
DARK_FACTOR = 0.15
BOMB_SIDE = 30_000  # 900 M declared pixels, about 110 KB on disk

_GIVEN = ("Amina", "Bruno", "Chen", "Dara", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas")
_FAMILY = ("Okafor", "Silva", "Wang", "Novak", "Kaya", "Haddad", "Mensah", "Sato", "Costa", "Berg")
_SEX = ("F", "M", "X")
_CENTERS = (("CTR-01", 0), ("CTR-02", 330), ("CTR-03", -180))  # center id, UTC offset (min)
_CAPTURE_START = datetime(2024, 5, 1, 8, 0)
_GREY = (128, 128, 128)


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
) -> DemoBatch:
    """Write a demo batch folder (``photos/``, ``manifest.<ext>``, ``expected.json``).

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
    maker = _PhotoMaker(portraits_dir, work / "photos", rng)
    rows = _good_rows(maker, recaptures) + _conversion_rows(maker)
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


def head_and_shoulders(portrait: Image.Image, box: Box) -> Image.Image:
    """The portrait cropped around the face, as a registry capture would frame it."""
    left, top, right, bottom = box
    width = right - left
    crop = (left - 0.8 * width, top - 0.8 * width, right + 0.8 * width, bottom + 1.6 * width)
    return portrait.crop(_clip(crop, portrait.size))


class _PhotoMaker:
    """Writes the photo files; each method returns the path relative to the batch folder."""

    def __init__(self, portraits: Path, photos: Path, rng: np.random.Generator) -> None:
        self.portraits = portraits
        self.photos = photos
        self.rng = rng

    def rgb(self, name: str) -> Image.Image:
        with Image.open(self.portraits / name) as image:
            return image.convert("RGB")

    def copy(self, name: str, target: str | None = None) -> str:
        shutil.copyfile(self.portraits / name, self.photos / (target or name))
        return f"photos/{target or name}"

    def save(self, image: Image.Image, name: str, **params: object) -> str:
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        defaults: dict[str, object] = {"quality": 90} if fmt == "JPEG" else {}
        image.save(self.photos / name, fmt, **{**defaults, **params})
        return f"photos/{name}"

    def directory(self, name: str) -> str:
        """A folder where a photo should be: looked at, never opened."""
        (self.photos / name).mkdir()
        return f"photos/{name}"

    def write_bytes(self, data: bytes, name: str) -> str:
        (self.photos / name).write_bytes(data)
        return f"photos/{name}"

    def recapture(self, name: str, index: int) -> str:
        """Crop keeping the face, tilt up to 8 degrees, change exposure and JPEG quality."""
        angle = float(self.rng.uniform(-8.0, 8.0))
        brightness = float(self.rng.uniform(0.8, 1.2))
        quality = int(self.rng.integers(40, 96))
        margins = self.rng.uniform(0.5, 1.2, size=4) * np.array([1.0, 1.0, 1.0, 1.5])
        long_side = int(self.rng.integers(640, 1025))
        image = self.rgb(name)
        left, top, right, bottom = FACE_BOXES[name]
        width = right - left
        centre = ((left + right) / 2, (top + bottom) / 2)
        tilted = image.rotate(angle, Image.Resampling.BICUBIC, center=centre, fillcolor=_GREY)
        ml, mt, mr, mb = (float(m) * width for m in margins)
        shot = tilted.crop(_clip((left - ml, top - mt, right + mr, bottom + mb), image.size))
        scale = long_side / max(shot.size)
        if scale < 1.0:
            size = (round(shot.width * scale), round(shot.height * scale))
            shot = shot.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        shot = ImageEnhance.Brightness(shot).enhance(brightness)
        return self.save(shot, f"{Path(name).stem}-r{index}.jpg", quality=quality)

    def crop(self, name: str) -> Image.Image:
        return head_and_shoulders(self.rgb(name), FACE_BOXES[name])

    def exif_rotated(self, name: str) -> str:
        """Pixels stored turned 90 degrees left; Orientation 6 tells a viewer to turn them back."""
        exif = Image.Exif()
        exif[0x0112] = 6
        stored = self.crop(name).transpose(Image.Transpose.ROTATE_90)
        return self.save(stored, f"exif6-{Path(name).stem}.jpg", exif=exif.tobytes())

    def gray16(self, name: str) -> str:
        grey = np.asarray(self.crop(name).convert("L"), dtype=np.uint16) * np.uint16(257)
        return self.save(Image.fromarray(grey), f"gray16-{Path(name).stem}.png")

    def no_face(self) -> str:
        ys, xs = np.mgrid[0:480, 0:640].astype(np.float64)
        base = np.stack([60 + 0.2 * xs, 80 + 0.25 * ys, 200 - 0.15 * xs], axis=-1)
        noisy = base + self.rng.normal(0.0, 12.0, size=base.shape)
        pixels = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        return self.save(Image.fromarray(pixels), "no-face.jpg")

    def two_faces(self) -> str:
        """obama.jpg and the top of biden.jpg, 600 px high: dlib boxes 130 and 156 px wide."""
        left = self.rgb("obama.jpg")
        right = self.rgb("biden.jpg").crop((0, 0, 970, 1100))
        parts = [p.resize((round(p.width * 600 / p.height), 600)) for p in (left, right)]
        canvas = Image.new("RGB", (parts[0].width + parts[1].width, 600), _GREY)
        canvas.paste(parts[0], (0, 0))
        canvas.paste(parts[1], (parts[0].width, 0))
        return self.save(canvas, "two-faces.jpg")

    def link_outside(self, out_dir: Path) -> str:
        """A symlink in photos/ to a real portrait in ``<out_dir>-outside/`` (relative link)."""
        outside = out_dir.parent / f"{out_dir.name}-outside"
        outside.mkdir(exist_ok=True)
        shutil.copyfile(self.portraits / "obama.jpg", outside / "obama.jpg")
        (self.photos / "linked-out.jpg").symlink_to(Path("..", "..", outside.name, "obama.jpg"))
        return "photos/linked-out.jpg"

    def tiny(self) -> str:
        face = self.rgb("obama.jpg").crop(FACE_BOXES["obama.jpg"])
        return self.save(face.resize((40, 40), Image.Resampling.LANCZOS), "tiny.jpg")

    def blurred(self) -> str:
        blurred = self.rgb("obama2.jpg").filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
        return self.save(blurred, "blurred.jpg")

    def dark(self) -> str:
        dark = ImageEnhance.Brightness(self.rgb("obama.jpg")).enhance(DARK_FACTOR)
        return self.save(dark, "dark.jpg", quality=95)

    def small_face(self) -> str:
        image = self.rgb("obama.jpg")
        size = (round(image.width * SMALL_FACE_SCALE), round(image.height * SMALL_FACE_SCALE))
        small = image.resize(size, Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", (640, 640), (200, 200, 200))
        canvas.paste(small, ((640 - small.width) // 2, (640 - small.height) // 2))
        return self.save(canvas, "small-face.jpg")


def _good_rows(maker: _PhotoMaker, recaptures: int) -> list[_Row]:
    rows: list[_Row] = []
    for name in USABLE_PORTRAITS:
        person = PORTRAIT_IDENTITIES[name]
        rows.append(_Row("original", maker.copy(name), person))
        rows += [
            _Row("recapture", maker.recapture(name, k), person) for k in range(1, recaptures + 1)
        ]
    return rows


def _conversion_rows(maker: _PhotoMaker) -> list[_Row]:
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


def _hostile_rows(maker: _PhotoMaker, out_dir: Path, seed: int) -> list[_Row]:
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


def png_bomb(side: int) -> bytes:
    """A valid side x side 1-bit greyscale PNG of zeros, compressed row block by row block.

    The pixels are never held in memory: at 30000 px this declares 900 M pixels (112 MB of
    raw rows) in about 110 KB, which is what a decompression-bomb guard has to refuse.
    """

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then packed bits
    compressor = zlib.compressobj(9)
    parts: list[bytes] = []
    done = 0
    while done < side:
        rows = min(256, side - done)
        parts.append(compressor.compress(row * rows))
        done += rows
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


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


def _clip(box: tuple[float, float, float, float], size: tuple[int, int]) -> Box:
    left, top, right, bottom = box
    return (
        max(0, round(left)),
        max(0, round(top)),
        min(size[0], round(right)),
        min(size[1], round(bottom)),
    )
