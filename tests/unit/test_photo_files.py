"""Reading a photo never blocks: only regular files are opened, and a stalled read becomes a
photo_unreadable reject after imaging.read_timeout_s."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.intake.manifest_rules import resolve_photo
from dedup.intake.photo_files import read_local_file, read_photo, within_deadline
from dedup.settings import ImagingSettings, ManifestSettings
from tests.hostile import fails_if_blocked

LIMITS = ImagingSettings(read_timeout_s=2.0)


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    with fails_if_blocked(20, "reading a photo"):
        yield


def rejected(location: str, limits: ImagingSettings = LIMITS) -> RowRejected:
    with pytest.raises(RowRejected) as caught:
        read_photo(location, limits)
    return caught.value


def test_a_regular_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff photo")
    assert read_photo(str(tmp_path / "a.jpg"), LIMITS) == b"\xff\xd8\xff photo"
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_photo(str(tmp_path / "empty.jpg"), LIMITS) == b""


def test_a_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "a.jpg")
    started = time.monotonic()
    error = rejected(str(tmp_path / "a.jpg"))
    assert time.monotonic() - started < 1.0
    assert error.reason is RejectReason.PHOTO_UNREADABLE
    assert error.detail == "photo_path is a FIFO, not a regular file"


def test_directories_sockets_and_devices_are_refused_unopened(tmp_path: Path) -> None:
    (tmp_path / "dir.jpg").mkdir()
    server = socket.socket(socket.AF_UNIX)
    here = os.getcwd()
    os.chdir(tmp_path)  # AF_UNIX paths are short; bind relative to the folder
    try:
        server.bind("sock.jpg")
    finally:
        os.chdir(here)
    try:
        kinds = {
            "dir.jpg": "a directory",
            "sock.jpg": "a socket",
        }
        for name, kind in kinds.items():
            error = rejected(str(tmp_path / name))
            assert error.reason is RejectReason.PHOTO_UNREADABLE
            assert kind in error.detail
    finally:
        server.close()
    for device in ("/dev/zero", "/dev/null", "/dev/urandom"):
        error = rejected(device)
        assert (error.reason, error.detail) == (
            RejectReason.PHOTO_UNREADABLE,
            "photo_path is a character device, not a regular file",
        )


def test_a_link_to_a_device_never_reaches_the_reader(tmp_path: Path) -> None:
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    with pytest.raises(RowRejected) as caught:
        resolve_photo("zero.jpg", tmp_path, ManifestSettings())
    assert caught.value.reason is RejectReason.PHOTO_OUTSIDE_BATCH
    # Where absolute paths are allowed, a path naming the device reaches the reader: refused.
    location = resolve_photo("/dev/zero", tmp_path, ManifestSettings(allow_absolute_paths=True))
    assert rejected(location).reason is RejectReason.PHOTO_UNREADABLE


def test_a_link_left_in_place_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real.jpg").write_bytes(b"x")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "real.jpg")
    assert "a symbolic link" in rejected(str(tmp_path / "link.jpg")).detail


def test_a_sparse_file_is_judged_by_its_size_before_any_byte_is_read(tmp_path: Path) -> None:
    path = tmp_path / "sparse.jpg"
    with path.open("wb") as handle:
        handle.truncate(10 * 1024**4)  # 10 TiB declared, nothing on disk
    started = time.monotonic()
    error = rejected(str(path))
    assert time.monotonic() - started < 1.0
    assert error.reason is RejectReason.IMAGE_TOO_LARGE
    assert str(10 * 1024**4) in error.detail


def test_missing_files_and_impossible_names(tmp_path: Path) -> None:
    assert rejected(str(tmp_path / "absent.jpg")).reason is RejectReason.PHOTO_MISSING
    (tmp_path / "file").write_bytes(b"x")
    assert rejected(str(tmp_path / "file" / "below.jpg")).reason is RejectReason.PHOTO_MISSING
    assert rejected(str(tmp_path / ("x" * 300))).reason is RejectReason.PHOTO_MISSING
    assert rejected(str(tmp_path / "a\x00.jpg")).reason is RejectReason.PHOTO_MISSING


def test_a_file_that_grows_past_the_limit_after_the_look_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "growing.jpg"
    path.write_bytes(b"x" * 10)
    real_lstat = os.lstat

    def lstat_then_grow(target: str) -> os.stat_result:
        result = real_lstat(target)
        path.write_bytes(b"x" * 5000)
        return result

    monkeypatch.setattr("dedup.intake.photo_files.os.lstat", lstat_then_grow)
    error = rejected(str(path), ImagingSettings(max_file_bytes=1000))
    assert error.reason is RejectReason.IMAGE_TOO_LARGE


def test_a_file_swapped_for_another_between_look_and_open_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"first")
    real_lstat = os.lstat

    def lstat_then_swap(target: str) -> os.stat_result:
        result = real_lstat(target)
        (tmp_path / "other.jpg").write_bytes(b"second")
        os.replace(tmp_path / "other.jpg", path)
        return result

    monkeypatch.setattr("dedup.intake.photo_files.os.lstat", lstat_then_swap)
    assert "changed while it was opened" in rejected(str(path)).detail


def test_a_read_that_stalls_is_rejected_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network mount that stopped answering blocks in the kernel: stood in for here by an
    lstat that never returns until the test lets it go."""
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x")
    release = threading.Event()
    real_lstat = os.lstat

    def stalled_lstat(target: str) -> os.stat_result:
        release.wait(30)
        return real_lstat(target)

    monkeypatch.setattr("dedup.intake.photo_files.os.lstat", stalled_lstat)
    started = time.monotonic()
    error = rejected(str(path), ImagingSettings(read_timeout_s=0.5))
    waited = time.monotonic() - started
    release.set()
    assert 0.5 <= waited < 2.0
    assert error.reason is RejectReason.PHOTO_UNREADABLE
    assert error.detail == "reading the photo did not finish within 0.5 s (imaging.read_timeout_s)"


def test_the_deadline_abandons_a_call_blocked_in_the_kernel(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes: a real stalled system call."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()

    def read_fifo() -> bytes:
        with open(fifo, "rb") as stream:
            return stream.read()

    with pytest.raises(RowRejected) as caught:
        within_deadline(read_fifo, 0.3, "opening the FIFO")
    assert time.monotonic() - started < 2.0
    assert caught.value.reason is RejectReason.PHOTO_UNREADABLE
    # Let the abandoned thread finish, so it does not outlive the test.
    with open(fifo, "wb"):
        pass


def test_errors_inside_the_deadline_reach_the_caller(tmp_path: Path) -> None:
    with pytest.raises(RowRejected) as caught:
        within_deadline(lambda: read_local_file(str(tmp_path / "absent"), LIMITS), 5, "reading")
    assert caught.value.reason is RejectReason.PHOTO_MISSING
    assert within_deadline(lambda: 42, 5, "answering") == 42
