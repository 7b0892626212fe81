"""Where the lake is: a local folder or an ``s3://`` prefix, and what each client needs to open it.

One value, ``Lake``, carries the root and the ``s3`` settings, so Spark (s3a), delta-rs and
pyarrow all reach the same store with the same endpoint, region and addressing. Credentials
never pass through here: every client takes them from the environment and the standard AWS
chain.

Commits on S3. A Delta commit is the creation of the log file of the next version, which two
writers must never both succeed at. delta-rs creates it with a conditional put (``If-None-Match:
*``, ``AWS_CONDITIONAL_PUT=etag``; never ``AWS_S3_ALLOW_UNSAFE_RENAME``), so any number of
delta-rs writers are safe. Spark's Delta 3.3 on s3a has no conditional put: its
``S3SingleDriverLogStore`` is safe only while one Spark driver writes a table and no other
engine commits to it at the same moment. The stage job is the only Spark writer (``faces``,
``rejects``, ``enrollments``) and a night runs one batch at a time; an erasure rewriting those
tables must not run during a stage. Where that cannot be promised, Delta's
``S3DynamoDBLogStore`` and delta-rs's DynamoDB locking share one lock table
(``docs/operations.md``).

    >>> Lake("s3://registry/lake").spark_table("faces")
    's3a://registry/lake/faces'
    >>> Lake("/data/lake").table("faces")
    '/data/lake/faces'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dedup.contracts.locations import is_uri
from dedup.errors import LakeError
from dedup.s3_settings import S3Settings

if TYPE_CHECKING:
    from dedup.settings import Settings

S3_SCHEME = "s3://"
# Spark's Hadoop file system for S3 is s3a; the lake setting keeps the scheme every other
# client knows.
SPARK_S3_SCHEME = "s3a://"
S3A_LOG_STORE = "io.delta.storage.S3SingleDriverLogStore"


def is_s3(location: str) -> bool:
    return location.startswith(S3_SCHEME)


def spark_uri(location: str) -> str:
    """The same location as Spark's Hadoop names it (``s3a://`` for ``s3://``)."""
    return SPARK_S3_SCHEME + location[len(S3_SCHEME) :] if is_s3(location) else location


def bucket_and_key(location: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://`` location; a location without a bucket is refused."""
    rest = location[len(S3_SCHEME) :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise LakeError(f"lake {location!r} names no bucket: write it as s3://bucket/prefix")
    return bucket, key.strip("/")


@dataclass(frozen=True)
class Lake:
    """The lake's root and the object store settings that open it."""

    root: str
    s3: S3Settings = field(default_factory=S3Settings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", self.root.rstrip("/") or "/")
        if is_s3(self.root):
            bucket_and_key(self.root)
        elif is_uri(self.root):
            raise LakeError(
                f"lake {self.root!r}: only local folders and s3:// locations are supported"
            )

    @classmethod
    def of(cls, settings: Settings) -> Lake:
        return cls(settings.lake, settings.s3)

    @property
    def is_s3(self) -> bool:
        return is_s3(self.root)

    def join(self, relative: str) -> str:
        return f"{self.root}/{relative.strip('/')}" if relative else self.root

    def table(self, name: str) -> str:
        """Where table ``name`` lives, as delta-rs and pyarrow name it."""
        return self.join(name)

    def spark_table(self, name: str) -> str:
        return spark_uri(self.join(name))

    def storage_options(self) -> dict[str, str] | None:
        """delta-rs's options for this lake (None for a local one)."""
        if not self.is_s3:
            return None
        s3 = self.s3
        options = {
            "AWS_REGION": s3.region,
            # Commits are put-if-absent (the module says why); set, not left to a default.
            "AWS_CONDITIONAL_PUT": "etag",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false" if s3.path_style else "true",
        }
        if s3.endpoint is not None:
            options["AWS_ENDPOINT_URL"] = s3.endpoint
        if s3.allows_http:
            options["AWS_ALLOW_HTTP"] = "true"
        return options

    def filesystem(self) -> Any:
        """A pyarrow ``S3FileSystem`` for this lake's store (an s3:// lake only)."""
        return _s3_filesystem(self.s3)

    def describe(self) -> str:
        """The settings that say where the lake is, for an error message."""
        if not self.is_s3:
            return f"setting `lake` = {self.root}"
        endpoint = self.s3.store
        return f"setting `lake` = {self.root}, `s3.endpoint` = {endpoint}"

    def check_reachable(self) -> None:
        """Refuse, with the settings named, an s3:// lake whose store cannot be reached or
        whose bucket does not exist (checked once per process and lake)."""
        if self.is_s3:
            _check_bucket(self.root, self.s3)


@functools.cache
def _s3_filesystem(s3: S3Settings) -> Any:
    from urllib.parse import urlsplit

    from pyarrow import fs

    options: dict[str, Any] = {
        "region": s3.region,
        # A test server answers at once or never: do not wait minutes on a wrong endpoint.
        "connect_timeout": 5,
        "request_timeout": 30,
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=3),
        "force_virtual_addressing": not s3.path_style,
        # An object smaller than a part goes as one PutObject at close, not as a multipart
        # upload opened before the first byte (pipelines.lake.work_files).
        "allow_delayed_open": True,
    }
    if s3.endpoint is not None:
        parts = urlsplit(s3.endpoint)
        options["endpoint_override"] = parts.netloc + parts.path
        options["scheme"] = parts.scheme
    return fs.S3FileSystem(**options)


@functools.cache
def _check_bucket(root: str, s3: S3Settings) -> None:
    from pyarrow import fs

    bucket, _ = bucket_and_key(root)
    where = Lake(root, s3).describe()
    try:
        info = _s3_filesystem(s3).get_file_info(bucket)
    except OSError as error:
        raise LakeError(f"the lake's object store cannot be reached ({where}): {error}") from None
    if info.type == fs.FileType.NotFound:
        raise LakeError(
            f"bucket {bucket!r} of the lake does not exist ({where}): create it, or correct "
            "the setting"
        )
