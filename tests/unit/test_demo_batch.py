"""The demo batch holds what it says it holds, the same bytes for the same seed.

The portraits are fetched from PyPI into the real cache once (later runs use the cache).
The dlib test re-measures the geometry the builder pins (face boxes, scale factors), so a
change of detector or portraits shows up here rather than as a puzzling stage report.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import tarfile
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps

from dedup.contracts.reasons import RejectReason
from dedup.contracts.schemas import MANIFEST_COLUMNS
from dedup.demo import portraits as portraits_module
from dedup.demo.batch import DemoBatch, build_demo_batch, read_demo_batch
from dedup.demo.photos import FACE_BOXES, USABLE_PORTRAITS, head_and_shoulders
from dedup.demo.portraits import PORTRAIT_IDENTITIES, PORTRAIT_SHA256, fetch_portraits
from dedup.errors import DependencyError

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


@pytest.fixture(scope="module")
def portraits() -> Path:
    return fetch_portraits()


@pytest.fixture(scope="module")
def batch(portraits: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoBatch:
    return build_demo_batch(tmp_path_factory.mktemp("demo") / "batch", portraits)


def _rows_of(batch: DemoBatch, kind: str) -> list[Path]:
    return [batch.folder / row.photo_path for row in batch.expected if row.kind == kind]


def _tree(folder: Path) -> dict[str, bytes | str]:
    """Relative path -> file bytes, or link text for symlinks (named after the folder)."""
    tree: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            tree[key] = str(path.readlink()).replace(folder.name, "<batch>")
        elif path.is_file():
            tree[key] = path.read_bytes()
    return tree


def test_same_seed_gives_identical_bytes(portraits: Path, tmp_path: Path) -> None:
    first = build_demo_batch(tmp_path / "one", portraits, seed=7)
    second = build_demo_batch(tmp_path / "two", portraits, seed=7)
    other = build_demo_batch(tmp_path / "three", portraits, seed=8)
    assert _tree(first.folder) == _tree(second.folder)
    assert first.expected == second.expected
    assert _tree(first.folder)["manifest.csv"] != _tree(other.folder)["manifest.csv"]
    assert _tree(first.folder)["photos/obama-r1.jpg"] != _tree(other.folder)["photos/obama-r1.jpg"]


def test_every_reason_but_already_enrolled_is_expected(batch: DemoBatch) -> None:
    reasons = {reason for reason in batch.expected_reasons().values() if reason}
    wanted = {reason.value for reason in RejectReason} - {
        RejectReason.ALREADY_ENROLLED.value,
        RejectReason.INTERNAL_ERROR.value,
    }
    assert reasons == wanted
    staged = [row for row in batch.expected if row.expected_status == "staged"]
    assert {row.kind for row in staged} == {
        "original",
        "recapture",
        "cmyk",
        "grayscale",
        "gray16",
        "rgba",
        "exif_rotated",
    }
    assert len(staged) == len(USABLE_PORTRAITS) * 4 + 5
    assert all(row.expected_reason is None for row in staged)


def test_expected_rows_match_manifest_rows(batch: DemoBatch) -> None:
    with batch.manifest.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["enrollment_id"] for r in rows] == [e.enrollment_id for e in batch.expected]
    assert [r["photo_path"] for r in rows] == [e.photo_path for e in batch.expected]
    assert [e.row_index for e in batch.expected] == list(range(len(rows)))
    assert read_demo_batch(batch.folder) == batch
    duplicates = [e for e in batch.expected if e.kind == "duplicate_id"]
    assert len(duplicates) == 2
    assert duplicates[0].enrollment_id == duplicates[1].enrollment_id
    assert {e.expected_reason for e in duplicates} == {"duplicate_in_batch"}


def test_well_formed_rows_are_well_formed(batch: DemoBatch) -> None:
    """Rows that must pass validation really do; each invalid row breaks one field."""
    with batch.manifest.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row, expected in zip(rows, batch.expected, strict=True):
        assert date.fromisoformat(row["date_of_birth"])
        assert row["sex"] in {"F", "M", "X"}
        if expected.expected_reason == "invalid_row":
            continue
        assert ID_PATTERN.fullmatch(row["enrollment_id"]), row
        assert datetime.fromisoformat(row["captured_at"]).tzinfo is not None
        assert row["center_id"]
        if expected.expected_reason != "consent_missing":
            assert row["consent"] == "true"
    invalid = {
        e.kind: rows[e.row_index]
        for e in batch.expected
        if e.kind.startswith(("id_", "bad", "empty"))
    }
    assert not ID_PATTERN.fullmatch(invalid["id_with_space"]["enrollment_id"])
    assert not ID_PATTERN.fullmatch(invalid["id_with_bang"]["enrollment_id"])
    assert len(invalid["id_too_long"]["enrollment_id"]) == 65
    assert invalid["bad_captured_at"]["captured_at"] == "yesterday"
    assert invalid["empty_center_id"]["center_id"] == ""


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_manifest_has_declared_columns(portraits: Path, tmp_path: Path, fmt: str) -> None:
    batch = build_demo_batch(tmp_path / "b", portraits, recaptures=0, manifest_format=fmt)  # type: ignore[arg-type]
    assert batch.manifest.name == f"manifest.{fmt}"
    if fmt == "csv":
        with batch.manifest.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = tuple(reader.fieldnames or ())
            rows = list(reader)
    elif fmt == "jsonl":
        rows = [
            json.loads(line) for line in batch.manifest.read_text(encoding="utf-8").splitlines()
        ]
        columns = tuple(rows[0])
        assert all(tuple(row) == columns for row in rows)
    else:
        table = pq.read_table(batch.manifest)
        columns = tuple(table.column_names)
        assert all(str(field.type) == "string" for field in table.schema)
        rows = table.to_pylist()
    assert columns == MANIFEST_COLUMNS
    assert len(rows) == len(batch.expected)
    assert all(isinstance(value, str) for row in rows for value in row.values())
    assert [row["photo_path"] for row in rows] == [e.photo_path for e in batch.expected]


def test_bomb_declares_huge_size_in_a_small_file(
    batch: DemoBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    (bomb,) = _rows_of(batch, "bomb")
    assert bomb.stat().st_size < 1_000_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(bomb) as image:
        width, height = image.size
        assert image.format == "PNG"
        assert image.mode == "1"
    assert width * height > 50_000_000


def test_conversion_rows_have_their_modes(batch: DemoBatch) -> None:
    modes = {"cmyk": "CMYK", "grayscale": "L", "gray16": "I;16", "rgba": "RGBA"}
    for kind, mode in modes.items():
        (path,) = _rows_of(batch, kind)
        with Image.open(path) as image:
            assert image.mode == mode, kind
    (gray16,) = _rows_of(batch, "gray16")
    with Image.open(gray16) as image:
        assert int(np.asarray(image).max()) > 255  # really uses 16 bits


def test_exif_rotated_turns_upright(batch: DemoBatch, portraits: Path) -> None:
    (path,) = _rows_of(batch, "exif_rotated")
    with Image.open(portraits / "obama.jpg") as original:
        upright = head_and_shoulders(original.convert("RGB"), FACE_BOXES["obama.jpg"])
    with Image.open(path) as stored:
        assert stored.getexif()[0x0112] == 6
        assert stored.size == (upright.height, upright.width)
        turned = ImageOps.exif_transpose(stored)
    assert turned.size == upright.size
    difference = np.abs(np.asarray(turned, np.int16) - np.asarray(upright, np.int16))
    assert difference.mean() < 4.0


def test_symlink_and_paths_leave_the_batch(batch: DemoBatch) -> None:
    (link,) = _rows_of(batch, "symlink_out")
    assert link.is_symlink()
    target = link.resolve(strict=True)
    assert not target.is_relative_to(batch.folder.resolve())
    assert target.parent.name == f"{batch.folder.name}-outside"
    paths = {row.kind: row.photo_path for row in batch.expected}
    assert paths["parent_path"].startswith("../")
    assert Path(paths["absolute_path"]).is_absolute()
    assert not (batch.folder / paths["missing"]).exists()


def test_refuses_a_folder_that_is_not_empty(portraits: Path, tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_demo_batch(tmp_path / "b", portraits, recaptures=0)
    assert (tmp_path / "b" / "keep.txt").read_text() == "mine"


# --- the geometry the builder pins, re-measured with dlib as the stage job detects ---------


def _detect(image: Image.Image) -> list[tuple[tuple[int, int, int, int], float]]:
    """Boxes (full-resolution pixels) and scores: upsample 1, long side 1024, threshold 0."""
    import dlib

    if image.mode == "I;16":
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    rgb = ImageOps.exif_transpose(image).convert("RGB")
    scale = min(1.0, 1024 / max(rgb.size))
    if scale < 1.0:
        rgb = rgb.resize(
            (round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR
        )
    rects, scores, _ = dlib.get_frontal_face_detector().run(np.asarray(rgb), 1, 0.0)
    return [
        (
            (
                round(r.left() / scale),
                round(r.top() / scale),
                round((r.right() + 1) / scale),
                round((r.bottom() + 1) / scale),
            ),
            float(s),
        )
        for r, s in zip(rects, scores, strict=True)
    ]


def _one_face(path: Path) -> tuple[tuple[int, int, int, int], float]:
    with Image.open(path) as image:
        found = _detect(image)
    assert len(found) == 1, (path.name, found)
    return found[0]


@pytest.mark.slow
def test_pinned_geometry_still_holds(batch: DemoBatch, portraits: Path) -> None:
    for name, pinned in FACE_BOXES.items():
        box, score = _one_face(portraits / name)
        assert score >= 0.3, name
        assert max(abs(a - b) for a, b in zip(box, pinned, strict=True)) <= 3, (name, box)
    for name in USABLE_PORTRAITS:
        with Image.open(portraits / name) as image:
            width, height = image.size
        left, top, right, bottom = FACE_BOXES[name]
        assert left >= 0 and top >= 0 and right <= width and bottom <= height, name
    assert set(USABLE_PORTRAITS) < set(PORTRAIT_IDENTITIES)

    (small,) = _rows_of(batch, "small_face")
    box, _ = _one_face(small)
    assert 35 <= box[2] - box[0] <= 55
    for kind in ("blurred", "dark"):
        (path,) = _rows_of(batch, kind)
        _, score = _one_face(path)
        assert score >= 0.3, kind
    (two,) = _rows_of(batch, "two_faces")
    with Image.open(two) as image:
        faces = _detect(image)
    assert len(faces) == 2 and all(b[2] - b[0] >= 100 for b, _ in faces)
    (no_face,) = _rows_of(batch, "no_face")
    with Image.open(no_face) as image:
        assert _detect(image) == []


@pytest.mark.slow
def test_staged_rows_hold_one_usable_face(batch: DemoBatch) -> None:
    for row in batch.expected:
        if row.expected_status != "staged":
            continue
        path = batch.folder / row.photo_path
        (left, top, right, bottom), score = _one_face(path)
        with Image.open(path) as image:
            width, height = ImageOps.exif_transpose(image).size
        assert score >= 0.3 and right - left >= 60, row
        assert left >= 0 and top >= 0 and right <= width and bottom <= height, row


# --- fetching the portraits ----------------------------------------------------------------


def test_cached_portraits_need_no_network(portraits: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip must not run when the cache is complete")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert fetch_portraits(portraits.parent.parent) == portraits
    assert sorted(p.name for p in portraits.iterdir()) == sorted(PORTRAIT_SHA256)


def test_pip_failure_is_a_dependency_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(DependencyError, match="PyPI"):
        fetch_portraits(tmp_path)
    assert not (tmp_path / "portraits" / "face_recognition-1.3.0").exists()


def test_unsafe_archive_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("face_recognition-1.3.0/tests/test_images/../../../evil.jpg")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DependencyError, match="unsafe"):
        portraits_module._extract_images(archive, tmp_path / "out")
    assert not (tmp_path / "evil.jpg").exists()
