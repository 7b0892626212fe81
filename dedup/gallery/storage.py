"""Where a gallery's files live: the one seam every gallery file operation goes through.

The gallery code names files by *keys*, POSIX paths relative to the gallery root
(``versions/v000003/ledger.parquet``, ``segments/s000000001000-1f2e/vectors.npy``), and asks a
``GalleryStorage`` to read, write, list or delete them. ``LocalStorage`` keeps them in a
folder, ``dedup.gallery.s3_storage.S3Storage`` in an S3 bucket, behind the same few
operations:

- ``local_path`` hands a reader a local file to open or memory-map (S3: a verified copy in a
  local cache);
- ``write`` fills a local temporary file and makes it the key's content atomically;
- ``staging``/``commit`` let a writer fill a prefix that readers never see, then make it
  appear whole (here: a ``.tmp-*`` folder renamed into place; S3 writes the final prefix
  directly, since nothing is read from it until a manifest names it);
- ``replace_current`` replaces the ``CURRENT`` pointer, only if it still holds what the writer
  started from (here the writer's lock guarantees that; S3 uses a conditional put).

``GalleryLocation`` is where a gallery is (a folder or an ``s3://`` prefix, with the ``s3``
settings and the cache folder that reach it), and ``storage_for`` the one constructor every
entry point opens a gallery with: a path, a location string or a ``GalleryLocation``.

Example::

    storage = storage_for(GalleryLocation("s3://registry/gallery", settings.s3))
    with storage.lock():
        storage.write_bytes("versions/v000002/manifest.json", text.encode())

    >>> GalleryLocation("s3://registry/gallery/").join("versions/v000002").root
    's3://registry/gallery/versions/v000002'
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dedup.atomic_files import sha256_file, write_atomically, write_bytes_atomically
from dedup.contracts.locations import is_uri
from dedup.errors import GalleryError
from dedup.s3_settings import S3Settings

if TYPE_CHECKING:
    from dedup.settings import Settings

CURRENT_KEY = "CURRENT"
LOCK_KEY = "LOCK"
TMP_PREFIX = ".tmp-"
S3_SCHEME = "s3://"


@dataclass(frozen=True)
class GalleryLocation:
    """Where a gallery (or one version of it) is, and what reaches it: a local folder or an
    ``s3://bucket/prefix``; the ``s3`` settings of its store (never credentials: those come
    from the environment and the AWS chain); and ``cache``, the local folder an ``s3://``
    gallery's files are downloaded into (None: ``<cache>/gallery``, resolved by the process
    that opens it, so a Ray actor uses its own node's). A plain value, so it can be sent to
    another process (a shard actor) as it is."""

    root: str
    s3: S3Settings = field(default_factory=S3Settings)
    cache: Path | None = None

    def __post_init__(self) -> None:
        root = os.fspath(self.root)
        if root.startswith(S3_SCHEME):
            bucket, _, key = root[len(S3_SCHEME) :].partition("/")
            if not bucket:
                raise GalleryError(
                    f"gallery {root!r} names no bucket: write it as s3://bucket/prefix"
                )
            root = f"{S3_SCHEME}{bucket}/{key.strip('/')}".rstrip("/")
        elif is_uri(root):
            raise GalleryError(
                f"gallery {root!r}: only local folders and s3:// locations are supported"
            )
        elif root.startswith("s3:/"):
            raise GalleryError(
                f"gallery {root!r} is an s3:// location made into a local path (which drops "
                "a slash): pass it as a string or a GalleryLocation"
            )
        object.__setattr__(self, "root", root)

    @classmethod
    def of(cls, settings: Settings) -> GalleryLocation:
        """The configured gallery: ``gallery``, ``s3`` and ``gallery_cache``."""
        return cls(settings.gallery, settings.s3, settings.gallery_cache)

    @property
    def is_s3(self) -> bool:
        return self.root.startswith(S3_SCHEME)

    @property
    def name(self) -> str:
        """The last part of the root (a version folder's name)."""
        return self.root.rpartition("/")[2] if self.is_s3 else Path(self.root).name

    @property
    def parent(self) -> GalleryLocation:
        parent = self.root.rpartition("/")[0] if self.is_s3 else str(Path(self.root).parent)
        return dataclasses.replace(self, root=parent)

    def join(self, key: str) -> GalleryLocation:
        """The location of ``key`` under this one."""
        if not key:
            return self
        root = f"{self.root}/{key}" if self.is_s3 else str(Path(self.root) / key)
        return dataclasses.replace(self, root=root)

    def describe(self) -> str:
        """The settings that say where the gallery is, for an error message."""
        if not self.is_s3:
            return f"gallery {self.root}"
        endpoint = self.s3.store
        return f"gallery {self.root} (`s3.endpoint` = {endpoint})"

    def __str__(self) -> str:
        return self.root


# What every gallery entry point accepts: a local folder, a location string (``s3://...``,
# with the default ``s3`` settings) or a ``GalleryLocation``.
GalleryRoot = str | os.PathLike[str] | GalleryLocation


def gallery_location(where: GalleryRoot, settings: Settings | None = None) -> GalleryLocation:
    """``where`` as a ``GalleryLocation``; a path or string given with ``settings`` is in the
    store of their ``s3`` section, cached in their ``gallery_cache``."""
    if isinstance(where, GalleryLocation):
        return where
    if settings is None:
        return GalleryLocation(os.fspath(where))
    return GalleryLocation(os.fspath(where), settings.s3, settings.gallery_cache)


def storage_for(where: GalleryRoot) -> GalleryStorage:
    """The storage of a gallery: ``LocalStorage`` for a folder, ``S3Storage`` for ``s3://``."""
    location = gallery_location(where)
    if location.is_s3:
        from dedup.gallery.s3_storage import S3Storage  # boto3 only where a gallery is on S3

        return S3Storage(location)
    return LocalStorage(Path(location.root))


class GalleryStorage(Protocol):
    """The file operations a gallery needs; keys are root-relative POSIX paths."""

    def local_path(self, key: str) -> Path:
        """A local file holding ``key``'s content, to open or memory-map read-only."""
        ...

    def location(self, key: str = "") -> GalleryLocation:
        """Where ``key`` (a file or a prefix) is, as another process can open it."""
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

    def drop_cached(self, segments: Collection[str]) -> None:
        """Forget local copies of segments other than ``segments`` (prefixes): a cache's, so
        that an erased template does not outlive its compaction there; a folder has none."""
        ...


class LocalStorage:
    """A gallery in a local folder: atomic temp-then-rename writes, fsynced folders."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def local_path(self, key: str) -> Path:
        return self.root / key

    def location(self, key: str = "") -> GalleryLocation:
        return GalleryLocation(str(self.root / key))

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

    def drop_cached(self, segments: Collection[str]) -> None:
        return None

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
