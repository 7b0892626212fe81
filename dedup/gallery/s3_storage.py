"""A gallery in an S3 bucket (or an S3-compatible store): ``S3Storage``, the ``GalleryStorage``
of an ``s3://`` root, with the guarantees of the local folder.

It relies on what such a store offers: a PUT is atomic (the object appears whole or not at
all; a multipart upload when it completes), reads and lists are strongly consistent, and a
PUT can be conditional on the object's ETag (``If-Match``) or on its absence
(``If-None-Match: *``). AWS S3 (since November 2024), MinIO and moto's server (the tests) do.

- **Versions and segments are written under their final prefix.** There is no rename on S3,
  and nothing reads a prefix before a manifest that ``CURRENT`` names lists it, so ``staging``
  returns the final key and ``commit`` has nothing left to do. What a crash leaves (a version
  ``CURRENT`` never named, whole or in part; a segment no version names) is exactly what
  ``publish.sweep`` already deletes before the next draft, under the lock. Segment and trained
  index names carry a random token, so a retry never writes over a crash's files; a version
  prefix is written again by the retry once the sweep removed it, which is why cached version
  files are checked against the object's ETag (below). A prefix is deleted with its
  ``manifest.json`` last, so a crash mid-deletion leaves either leftovers that no manifest
  names (swept) or a version whose manifest still names its segments (kept until the next
  prune finishes it), never segments deleted under a manifest that names them.
- **``CURRENT`` is replaced by a conditional PUT**: ``If-Match`` on the ETag of the ``CURRENT``
  this storage read when the writer started (``If-None-Match: *`` for a first version). A
  writer whose starting version was replaced meanwhile is refused with a ``GalleryError``
  instead of silently undoing the other's publish.
- **The writer's lock is an object**, ``LOCK``, created with ``If-None-Match: *``, holding who
  took it, from which command, and when; deleted on exit, waited for (at most 15 minutes) by a
  second writer, which then fails naming the holder and how to clear a lock a killed writer
  left. Not a self-expiring lease: ``dedup.gallery.s3_lock`` says why.
- **Readers get local files from a cache** (``local_path``; ``dedup.gallery.s3_cache``):
  downloaded into a temporary file, checked, fsynced and renamed into place, so a crash never
  leaves a truncated file under the real name; one process per machine downloads a file, the
  others wait for it and use it. Every object this module writes carries its sha256 as
  metadata, and a download that does not hash to it is fetched once more, then refused as
  corrupt in the bucket. A segment's or trained index's object never changes under its name,
  so its cached copy is used as it is; a version's are re-checked against the object's ETag
  (one HEAD). ``sha256`` (what ``verify_key`` proves a file against the manifest with) hashes
  the cached copy and, when it no longer hashes to what was downloaded (the local disk went
  bad, someone edited it), downloads it again first: a corrupt cached file is replaced, never
  served as the gallery's. ``write`` fills a file in the cache, uploads it (multipart above
  64 MB, ``upload_file``) and keeps it as the cached copy. A deleted object's cached copy is
  deleted with it, and opening a version forgets the cached segments it does not name
  (``drop_cached``), so an erased template does not outlive its compaction in the cache of a
  machine that opens the gallery again. Nothing else evicts; deleting the cache folder is
  always safe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from dedup.atomic_files import sha256_file
from dedup.errors import GalleryError
from dedup.gallery.s3_cache import GalleryCache, fetching, sha256
from dedup.gallery.s3_lock import ObjectLock
from dedup.gallery.s3_objects import SHA256_METADATA, Refused, S3Prefix
from dedup.gallery.storage import CURRENT_KEY, GalleryLocation

MANIFEST_NAME = "manifest.json"  # deleted last from a prefix (the module says why)
# Keys whose objects never change under their name (their names carry a random token).
IMMUTABLE_PREFIXES = ("segments/", "trained/")


class S3Storage:
    """A gallery under ``s3://bucket/prefix`` (see the module for the design)."""

    def __init__(self, where: GalleryLocation, *, lock_wait_s: float | None = None) -> None:
        self.where = where
        self.objects = S3Prefix(where)
        self.cache = GalleryCache(where.cache, where.s3, where.root.removeprefix("s3://"))
        self.writer_lock = ObjectLock(self.objects, wait_s=lock_wait_s)
        self._current: tuple[str | None, str | None] = (None, None)  # name, ETag last read

    # ------------------------------------------------------------------ reading

    def local_path(self, key: str) -> Path:
        try:
            return self._cached(key)
        except FileNotFoundError:
            raise GalleryError(f"gallery file {key} is missing from {self.where.root}") from None

    def location(self, key: str = "") -> GalleryLocation:
        return self.where.join(key)

    def exists(self, key: str) -> bool:
        try:
            self.objects.head(key)
            return True
        except FileNotFoundError:
            prefix = self.objects.key(key) + "/"
            return bool(self.objects.request("list_objects_v2", Prefix=prefix, MaxKeys=1)
                        .get("KeyCount", 0))  # fmt: skip

    def read_bytes(self, key: str) -> bytes:
        return bytes(self.objects.request("get_object", key)["Body"].read())

    def sha256(self, key: str) -> str:
        path = self._cached(key)
        digest = sha256(path)
        if digest != self.cache.record(path).get("sha256"):  # changed since it was fetched
            path = self._download(key, path, force=True)
            digest = sha256(path)
        return digest

    def size(self, key: str) -> int:
        return self.objects.head(key).size

    def list(self, prefix: str) -> list[str]:
        base = self.objects.key(prefix)
        base = f"{base}/" if base else ""
        names: set[str] = set()
        for page in self.objects.pages(base, delimiter="/"):
            names.update(
                p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", [])
            )
            names.update(o["Key"][len(base) :] for o in page.get("Contents", []))
        return sorted(name for name in names if name)

    def drop_cached(self, segments: Collection[str]) -> None:
        self.cache.keep_only_segments(segments)

    # ------------------------------------------------------------------ writing

    def write(self, key: str, writer: Callable[[Path], object]) -> str:
        path = self.cache.path(key)
        temporary = self.cache.temporary(path)
        try:
            temporary.touch()
            writer(temporary)
            digest = sha256_file(temporary)
            self.objects.upload(key, str(temporary), digest)
            with fetching(path):
                self.cache.keep(temporary, path, self.objects.head(key).etag, digest)
        finally:
            temporary.unlink(missing_ok=True)
        return digest

    def write_bytes(self, key: str, data: bytes) -> None:
        import hashlib

        metadata = {SHA256_METADATA: hashlib.sha256(data).hexdigest()}
        self.objects.request("put_object", key, Body=data, Metadata=metadata)

    def delete(self, key: str) -> None:
        base = self.objects.key(key)
        pages = self.objects.pages(f"{base}/")
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        manifests = [k for k in keys if k.rpartition("/")[2] == MANIFEST_NAME]
        others = sorted(set(keys) - set(manifests)) if keys else [base]  # a file: itself
        for batch in (others, manifests):
            for at in range(0, len(batch), 1000):
                objects = [{"Key": k} for k in batch[at : at + 1000]]
                reply = self.objects.request(
                    "delete_objects", Delete={"Objects": objects, "Quiet": True}
                )
                if reply.get("Errors"):
                    failed = reply["Errors"][0]
                    raise GalleryError(
                        f"could not delete {failed.get('Key')} from {self.where.root}: "
                        f"{failed.get('Message')}"
                    )
        self.cache.forget(key)

    def staging(self, key: str) -> str:
        return key  # written in place: nothing reads a prefix before CURRENT names it

    def commit(self, staged: str, key: str) -> None:
        if staged != key:
            raise GalleryError(f"{staged} was not staged as {key} in {self.where.root}")

    # ------------------------------------------------------------------ CURRENT and the lock

    def read_current(self) -> str | None:
        try:
            reply = self.objects.request("get_object", CURRENT_KEY)
        except FileNotFoundError:
            self._current = (None, None)
            return None
        name = str(reply["Body"].read().decode("utf-8")).strip()
        self._current = (name, str(reply["ETag"]))
        return name

    def replace_current(self, name: str, *, expected: str | None) -> None:
        seen, etag = self._current
        if seen != expected or (expected is not None and etag is None):
            seen, etag = self.read_current(), self._current[1]
        if seen != expected:
            raise self._not_published(name, expected, seen)
        self.writer_lock.check_mine(name)
        condition = {"IfMatch": etag} if expected is not None else {"IfNoneMatch": "*"}
        body = f"{name}\n".encode()
        try:
            reply = self.objects.request("put_object", CURRENT_KEY, Body=body, **condition)
        except Refused:
            raise self._not_published(name, expected, self.read_current()) from None
        self._current = (name, str(reply["ETag"]))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer per gallery: a second one waits, then fails naming the holder."""
        with self.writer_lock.held():
            yield

    def holder(self) -> dict[str, Any] | None:
        """What ``LOCK`` says, None when the gallery is not locked."""
        return self.writer_lock.holder()

    def _not_published(self, name: str, expected: str | None, now: str | None) -> GalleryError:
        return GalleryError(
            f"version {name} of gallery {self.where.root} was not published: another writer "
            f"replaced CURRENT (it names {now or 'nothing'}) after this writer read "
            f"{expected or 'no CURRENT'}; nothing was overwritten. Run the operation again: "
            "it starts from the published version, and its files are swept"
        )

    # ------------------------------------------------------------------ the cache

    def _cached(self, key: str) -> Path:
        """The cached copy of ``key``, fetched if missing or (a version file) stale."""
        path = self.cache.path(key)
        return path if self._fresh(key, path) else self._download(key, path)

    def _fresh(self, key: str, path: Path) -> bool:
        etag = self.cache.record(path).get("etag")
        if etag is None:
            return False
        return key.startswith(IMMUTABLE_PREFIXES) or etag == self.objects.head(key).etag

    def _download(self, key: str, path: Path, *, force: bool = False) -> Path:
        with fetching(path):
            head = self.objects.head(key)
            if not force and self.cache.record(path).get("etag") == head.etag:
                return path  # another process fetched it while this one waited
            for _ in range(2):
                temporary = self.cache.temporary(path)
                try:
                    self.objects.download(key, str(temporary))
                    digest = sha256_file(temporary)
                    if temporary.stat().st_size == head.size and digest == (head.sha256 or digest):
                        self.cache.keep(temporary, path, head.etag, digest)
                        return path
                finally:
                    temporary.unlink(missing_ok=True)
                head = self.objects.head(key)  # it may have been replaced while it was read
        raise GalleryError(
            f"gallery file {key} in {self.where.root} does not hash to the sha256 it was written "
            "with: the copy in the bucket is corrupt; restore it from the bucket's versions or a "
            "backup, or rebuild the gallery"
        )
