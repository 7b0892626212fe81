"""The local cache an ``s3://`` gallery is read from: ``GalleryCache``.

FAISS, NumPy's memory maps and Parquet read local files, so every file of an ``s3://`` gallery
that a reader opens is a local copy, ``<cache>/<store>/<bucket>/<key>``: the store (the
endpoint, ``aws`` for AWS itself) keeps one bucket name on two stores apart. Beside each copy,
``.<name>.s3.json`` records the object's ETag and the sha256 the copy had when it was checked,
and ``.<name>.lock`` is held while one process of the machine fetches or replaces it. A copy
becomes visible only whole: ``keep`` fsyncs a checked temporary file and renames it into place,
then writes its record, so a crash between leaves a record that disagrees with the copy and
the file is fetched again. Deleting the whole folder is always safe.

    >>> store_tag(S3Settings(endpoint="http://127.0.0.1:9000")), store_tag(S3Settings())
    ('127.0.0.1_9000', 'aws')
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from dedup.atomic_files import sha256_file, write_bytes_atomically
from dedup.errors import GalleryError
from dedup.gallery.segments import SEGMENTS_DIR
from dedup.s3_settings import S3Settings
from dedup.settings import default_cache_dir

# The sha256 of cached files this process hashed, by path, with the stat it was taken at.
_HASHED: dict[Path, tuple[tuple[int, int, int], str]] = {}


class GalleryCache:
    """The cached copies of one gallery's files (``root`` is ``<bucket>/<prefix>``)."""

    def __init__(self, folder: Path | None, s3: S3Settings, root: str) -> None:
        self.folder = (folder or default_cache_dir() / "gallery") / store_tag(s3) / root

    def path(self, key: str) -> Path:
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise GalleryError(f"gallery key {key!r} is not a plain relative path")
        return self.folder.joinpath(*parts)

    def temporary(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")

    def record(self, path: Path) -> dict[str, Any]:
        """What was recorded when the copy was kept (empty when nothing was, or not whole)."""
        try:
            return dict(json.loads(_sidecar(path).read_bytes())) if path.is_file() else {}
        except (OSError, ValueError):
            return {}

    def keep(self, temporary: Path, path: Path, etag: str, digest: str) -> None:
        """Make a checked temporary file the copy of ``path``: the data, then its record."""
        with temporary.open("rb") as stream:
            os.fsync(stream.fileno())
        temporary.chmod(0o444)  # never opened for writing again
        os.replace(temporary, path)
        record = {"etag": etag, "sha256": digest, "size": path.stat().st_size}
        write_bytes_atomically(_sidecar(path), json.dumps(record).encode())
        sha256(path, known=digest)

    def forget(self, key: str) -> None:
        """Delete the copy of a file or of a whole prefix."""
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        for name in (path, _sidecar(path), _lock_file(path)):
            if not name.is_dir():
                name.unlink(missing_ok=True)

    def keep_only_segments(self, segments: Collection[str]) -> None:
        """Forget every cached segment but ``segments`` (their prefixes)."""
        folder = self.folder / SEGMENTS_DIR
        kept = {prefix.rpartition("/")[2] for prefix in segments}
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            if entry.name not in kept:
                shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def fetching(path: Path) -> Iterator[None]:
    """Held while one process of the machine fetches or replaces ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock_file(path).open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sha256(path: Path, *, known: str | None = None) -> str:
    """sha256 of a cached file, hashed once per content this process saw (by its stat: a
    file rewritten since has another inode, size or time and is hashed again)."""
    status = path.stat()
    stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
    if known is None:
        seen = _HASHED.get(path)
        known = seen[1] if seen is not None and seen[0] == stamp else sha256_file(path)
    _HASHED[path] = (stamp, known)
    return known


def store_tag(s3: S3Settings) -> str:
    """The cache folder of a store, so that one bucket name on two stores never mixes."""
    if s3.endpoint is None:
        return "aws"
    return re.sub(r"[^A-Za-z0-9.-]+", "_", s3.endpoint.split("://", 1)[1]).strip("_")


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}.s3.json")


def _lock_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")
