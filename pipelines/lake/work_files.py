"""Files the jobs keep under the lake root, in a local folder or on S3, behind one seam.

A job's work folder (``<lake>/_work/<job>/<batch>``) holds the files that make a re-run
idempotent: the settings of the run, the stage's manifest and first-run time, the match's
candidate rows and search figures. Each is written whole or not at all:

- in a local lake, to a temporary sibling, fsynced, then renamed into place (as before);
- on S3, prepared whole in memory, then handed to the store in one write: an object smaller
  than a part (10 MiB) is one PutObject, a larger one a multipart upload that S3 makes
  visible only when it is completed at close. A reader (or a re-run after a crash) finds the
  old object or the new one, never part of one. Nothing goes to a temporary key first: S3
  has no rename.

Library logs (``spark.log``, ``ray.log``) cannot be appended to on S3: ``log_file`` gives a
local path for them (``settings.log_dir``).

    >>> folder = WorkFolder(Lake("s3://registry/lake"), "_work/match/b1", Path("/tmp/logs"))
    >>> folder.path("candidates.parquet")
    's3://registry/lake/_work/match/b1/candidates.parquet'
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dedup.atomic_files import write_atomically, write_bytes_atomically
from dedup.errors import LakeError
from pipelines.lake.location import Lake, bucket_and_key, spark_uri


@dataclass(frozen=True)
class WorkFolder:
    """One job's work folder for one batch: ``relative`` under the lake's root."""

    lake: Lake
    relative: str
    # Where library logs go (``log_file``); None for a folder no library logs into.
    logs: Path | None = None

    @property
    def location(self) -> str:
        return self.lake.join(self.relative)

    def path(self, name: str) -> str:
        """Where file ``name`` is, as delta-rs and pyarrow name it."""
        return f"{self.location}/{name}"

    def spark_path(self, name: str) -> str:
        """Where file (or folder) ``name`` is, as Spark names it."""
        return spark_uri(self.path(name))

    def log_file(self, name: str) -> Path:
        """A local file for a library's log (created on first write by the library)."""
        assert self.logs is not None, f"{self.location} has no log folder"
        return self.logs / name

    # ----------------------------------------------------------------- reading and writing

    def exists(self, name: str | None = None) -> bool:
        """Whether file ``name`` exists (or, without a name, anything in the folder)."""
        if not self.lake.is_s3:
            local = Path(self.location) if name is None else Path(self.path(name))
            return local.exists()
        if name is None:
            return bool(self.files())
        from pyarrow import fs

        return bool(self._s3(lambda s3: s3.get_file_info(self._key(name)).type == fs.FileType.File))

    def read_bytes(self, name: str) -> bytes:
        if not self.lake.is_s3:
            return Path(self.path(name)).read_bytes()

        def read(s3: Any) -> bytes:
            with s3.open_input_stream(self._key(name)) as stream:
                return bytes(stream.read())

        data: bytes = self._s3(read)
        return data

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode("utf-8")

    def write_bytes(self, name: str, data: bytes) -> str:
        """Write file ``name`` whole, atomically (the module says how); its location."""
        if not self.lake.is_s3:
            return str(write_bytes_atomically(Path(self.path(name)), data))

        def put(s3: Any) -> None:
            # One write of the whole object, then close (which sends it or completes it).
            stream = s3.open_output_stream(self._key(name))
            stream.write(data)
            stream.close()

        self._s3(put)
        return self.path(name)

    def write_parquet(self, name: str, table: pa.Table) -> str:
        if not self.lake.is_s3:
            written = write_atomically(Path(self.path(name)), lambda p: pq.write_table(table, p))
            return str(written)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return self.write_bytes(name, buffer.getvalue())

    def read_parquet(self, name: str) -> pa.Table:
        if not self.lake.is_s3:
            return pq.read_table(self.path(name))
        return pq.read_table(io.BytesIO(self.read_bytes(name)))

    def local_copy(self, name: str) -> Path:
        """File ``name`` as a local path, for a program that takes only a local file (a
        ``--config``): the file itself in a local lake, a copy in the log folder on S3."""
        if not self.lake.is_s3:
            return Path(self.path(name))
        copy = self.log_file(name)
        write_bytes_atomically(copy, self.read_bytes(name))
        return copy

    def delete(self, name: str) -> None:
        """Delete file ``name``; one that does not exist is not an error."""
        if not self.lake.is_s3:
            Path(self.path(name)).unlink(missing_ok=True)
            return
        from pyarrow import fs

        def delete(s3: Any) -> None:
            if s3.get_file_info(self._key(name)).type == fs.FileType.File:
                s3.delete_file(self._key(name))

        self._s3(delete)

    def files(self) -> list[str]:
        """The names of every file under the folder, sub-folders included, sorted."""
        if not self.lake.is_s3:
            root = Path(self.location)
            if not root.is_dir():
                return []
            return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        from pyarrow import fs

        prefix = self._key("")

        def listing(s3: Any) -> list[str]:
            selector = fs.FileSelector(prefix, recursive=True, allow_not_found=True)
            found = s3.get_file_info(selector)
            return sorted(
                info.path[len(prefix) + 1 :] for info in found if info.type == fs.FileType.File
            )

        names: list[str] = self._s3(listing)
        return names

    # ------------------------------------------------------------------------------- S3

    def _key(self, name: str) -> str:
        """``bucket/key`` of file ``name``, as pyarrow's S3 file system names it."""
        bucket, key = bucket_and_key(self.location)
        return "/".join(part for part in (bucket, key, name.strip("/")) if part)

    def _s3(self, operation: Any) -> Any:
        """Run ``operation`` on the lake's store, with an unreachable store or a missing
        bucket refused as a ``LakeError`` naming the settings."""
        self.lake.check_reachable()
        try:
            return operation(self.lake.filesystem())
        except FileNotFoundError:
            raise
        except OSError as error:
            raise LakeError(
                f"the lake's object store refused a request for {self.location} "
                f"({self.lake.describe()}): {error}"
            ) from None
