"""Reading a photo's bytes from where the manifest points, without ever blocking on it.

A manifest can point at anything a path can name: a FIFO (whose ``open`` waits for a writer
forever), a device (``/dev/zero`` never ends), a directory, a socket, a file on a network
mount that has stopped answering. The rules:

- the path is ``lstat``-ed before it is opened, and only a regular file is opened;
- it is opened without following a link and without blocking, and ``fstat`` must show the
  same regular file (nothing swapped in between the two looks);
- at most ``imaging.max_file_bytes + 1`` bytes are read;
- the whole read runs on a helper thread: when it has not finished after
  ``imaging.read_timeout_s`` the row is rejected and the thread is left to finish or hang on
  its own. A stalled read costs one row, never the batch.

Every failure is a ``RowRejected`` with a reason code; nothing else escapes for bad input.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable
from typing import TypeVar

from dedup.contracts.locations import is_uri
from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.imaging.decode import check_file_size
from dedup.settings import ImagingSettings

T = TypeVar("T")

_DETAIL = 300
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
# No file is there, or none could be: a part of the path is not a folder, or a name is too long.
_MISSING = {errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG}


def file_kind(mode: int) -> str:
    """What a file mode says the thing is, in words an operator knows."""
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _os_rejection(exc: OSError, doing: str) -> RowRejected:
    reason = RejectReason.PHOTO_MISSING if exc.errno in _MISSING else RejectReason.PHOTO_UNREADABLE
    detail = f"cannot {doing} the photo: {exc.strerror or exc}"
    return RowRejected(reason, detail[:_DETAIL])


def read_local_file(path: str, limits: ImagingSettings) -> bytes:
    """The bytes of the regular file at ``path`` (already resolved: links are not followed)."""
    try:
        before = os.lstat(path)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValueError):  # a NUL in the path: no such file can exist
            raise RowRejected(RejectReason.PHOTO_MISSING, "no file at photo_path") from exc
        raise _os_rejection(exc, "find") from exc
    if not stat.S_ISREG(before.st_mode):
        raise RowRejected(
            RejectReason.PHOTO_UNREADABLE,
            f"photo_path is {file_kind(before.st_mode)}, not a regular file",
        )
    check_file_size(before.st_size, limits)
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _os_rejection(exc, "open") from exc
    try:
        opened = os.fstat(descriptor)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            raise RowRejected(
                RejectReason.PHOTO_UNREADABLE, "the file at photo_path changed while it was opened"
            )
        os.set_blocking(descriptor, True)
        with os.fdopen(descriptor, "rb", closefd=True) as stream:
            descriptor = -1
            data = stream.read(limits.max_file_bytes + 1)
    except OSError as exc:
        raise _os_rejection(exc, "read") from exc
    finally:
        if descriptor >= 0:
            os.close(descriptor)
    check_file_size(len(data), limits)  # it grew after the lstat
    return data


def read_uri(location: str, limits: ImagingSettings) -> bytes:
    """The bytes behind a filesystem URI (``s3://``, ``file://``...) through pyarrow."""
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(location)
        info = filesystem.get_file_info(path)
    except (OSError, ValueError) as exc:
        raise RowRejected(
            RejectReason.PHOTO_MISSING, f"cannot reach photo: {exc}"[:_DETAIL]
        ) from exc
    if info.type == fs.FileType.NotFound:
        raise RowRejected(RejectReason.PHOTO_MISSING, "no file at photo_path")
    if info.type != fs.FileType.File:
        raise RowRejected(RejectReason.PHOTO_UNREADABLE, "photo_path is not a regular file")
    check_file_size(int(info.size or 0), limits)
    try:
        with filesystem.open_input_stream(path) as stream:
            data: bytes = stream.read(limits.max_file_bytes + 1)
    except OSError as exc:
        raise RowRejected(
            RejectReason.PHOTO_UNREADABLE, f"cannot read photo: {exc}"[:_DETAIL]
        ) from exc
    check_file_size(len(data), limits)
    return data


def within_deadline(work: Callable[[], T], seconds: float, what: str) -> T:
    """``work()`` on a helper thread; a ``photo_unreadable`` rejection if it is not done in time.

    The thread is a daemon and is not waited for: a read stuck in the kernel cannot be
    cancelled, only abandoned.
    """
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name="dedup-photo-read", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise RowRejected(
            RejectReason.PHOTO_UNREADABLE,
            f"{what} did not finish within {seconds:g} s (imaging.read_timeout_s)",
        )
    if failure:
        raise failure[0]
    return outcome[0]


def read_photo(location: str, limits: ImagingSettings) -> bytes:
    """The photo's bytes from a resolved local path or a URI, or raise ``RowRejected``."""
    reader = read_uri if is_uri(location) else read_local_file
    return within_deadline(
        lambda: reader(location, limits), limits.read_timeout_s, "reading the photo"
    )
