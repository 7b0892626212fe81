"""Where a gallery's files live: the one seam every gallery file operation goes through.

The gallery code names files by *keys*, POSIX paths relative to the gallery root
(``versions/v000003/ledger.parquet``, ``segments/s000000001000-1f2e/vectors.npy``), and asks a
``GalleryStorage`` to read, write, list or delete them. ``LocalStorage`` keeps them in a
folder. An object-store implementation (S3 with conditional writes) can slot in behind the
same few operations:

- ``local_path`` hands a reader a local file to open or memory-map (an object store would
  download it into a verified local cache first);
- ``write`` fills a local temporary file and makes it the key's content atomically;
- ``staging``/``commit`` let a writer fill a prefix that readers never see, then make it
  appear whole (here: a ``.tmp-*`` folder renamed into place; an object store can write the
  final prefix directly, since nothing is read from it until a manifest names it);
- ``replace_current`` replaces the ``CURRENT`` pointer, only if it still holds what the writer
  started from (here the writer's lock guarantees that; an object store uses a conditional
  put).

Example::

    storage = LocalStorage(root)
    with storage.lock():
        storage.write_bytes("versions/.tmp-ab/manifest.json", text.encode())
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from dedup.atomic_files import sha256_file, write_atomically, write_bytes_atomically
from dedup.errors import GalleryError

CURRENT_KEY = "CURRENT"
LOCK_KEY = "LOCK"
TMP_PREFIX = ".tmp-"


class GalleryStorage(Protocol):
    """The file operations a gallery needs; keys are root-relative POSIX paths."""

    def local_path(self, key: str) -> Path:
        """A local file holding ``key``'s content, to open or memory-map read-only."""
        ...

    def exists(self, key: str) -> bool: ...

    def read_bytes(self, key: str) -> bytes:
        """The content of ``key``; ``FileNotFoundError`` when there is none."""
        ...

    def write(self, key: str, writer: Callable[[Path], object]) -> str:
        """Let ``writer`` fill a temporary local file, publish it as ``key`` read-only,
        return its sha256."""
        ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def sha256(self, key: str) -> str:
        """``FileNotFoundError`` when ``key`` is missing."""
        ...

    def size(self, key: str) -> int: ...

    def list(self, prefix: str) -> list[str]:
        """The names directly under ``prefix`` (files and sub-prefixes), sorted."""
        ...

    def delete(self, key: str) -> None:
        """Delete a file or a whole prefix; a crash mid-way leaves a ``.tmp-*`` name."""
        ...

    def staging(self, key: str) -> str:
        """The prefix a writer fills for ``key`` (a folder name) before ``commit``."""
        ...

    def commit(self, staged: str, key: str) -> None:
        """Make the filled ``staged`` prefix appear whole under ``key``."""
        ...

    def read_current(self) -> str | None:
        """What ``CURRENT`` names (stripped), None when there is no gallery."""
        ...

    def replace_current(self, name: str, *, expected: str | None) -> None:
        """Point ``CURRENT`` at ``name``, refused unless it still names ``expected``."""
        ...

    def lock(self) -> AbstractContextManager[None]:
        """Held by the one writer of the gallery."""
        ...


class LocalStorage:
    """A gallery in a local folder: atomic temp-then-rename writes, fsynced folders."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def local_path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return (self.root / key).exists()

    def read_bytes(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except NotADirectoryError as error:
            raise FileNotFoundError(key) from error

    def write(self, key: str, writer: Callable[[Path], object]) -> str:
        path = write_atomically(self.root / key, writer)
        path.chmod(0o444)  # published files are never opened for writing again
        return sha256_file(path)

    def write_bytes(self, key: str, data: bytes) -> None:
        path = write_bytes_atomically(self.root / key, data)
        path.chmod(0o444)

    def sha256(self, key: str) -> str:
        return sha256_file(self.root / key)

    def size(self, key: str) -> int:
        return (self.root / key).stat().st_size

    def list(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        return sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []

    def delete(self, key: str) -> None:
        path = self.root / key
        if path.is_dir():
            # Rename away first, so a crash mid-removal leaves a .tmp-* folder, not half of one.
            doomed = path.parent / f"{TMP_PREFIX}removing-{secrets.token_hex(8)}"
            os.rename(path, doomed)
            shutil.rmtree(doomed)
        else:
            path.unlink(missing_ok=True)

    def staging(self, key: str) -> str:
        parent, _, _ = key.rpartition("/")
        staged = f"{parent}/{TMP_PREFIX}{secrets.token_hex(8)}" if parent else key
        (self.root / staged).mkdir(parents=True)
        return staged

    def commit(self, staged: str, key: str) -> None:
        _fsync_dir(self.root / staged)
        final = self.root / key
        os.rename(self.root / staged, final)
        _fsync_dir(final.parent)

    def read_current(self) -> str | None:
        try:
            return (self.root / CURRENT_KEY).read_text(encoding="utf-8").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def replace_current(self, name: str, *, expected: str | None) -> None:
        if self.read_current() != expected:
            raise GalleryError(
                f"gallery {self.root} was changed by another writer while this one held its lock"
            )
        write_bytes_atomically(self.root / CURRENT_KEY, f"{name}\n".encode())
        _fsync_dir(self.root)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One writer per gallery: a second one waits (an erase request during the nightly add)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK_KEY).open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable: without it a power cut may undo it."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
