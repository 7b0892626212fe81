"""The requests an ``s3://`` gallery makes, under its prefix: ``S3Prefix``.

One client per store and process (boto3 clients are thread-safe and slow to make), timeouts
short enough that a wrong endpoint fails in seconds, and the store's errors turned into this
project's: a missing object is ``FileNotFoundError``, a refused condition ``Refused``, anything
else a ``GalleryError`` that names the settings. Credentials come from the environment and the
AWS chain, never from here.

    >>> S3Prefix(GalleryLocation("s3://registry/gallery")).key("CURRENT")
    'gallery/CURRENT'
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dedup.errors import GalleryError
from dedup.gallery.storage import GalleryLocation
from dedup.s3_settings import S3Settings

SHA256_METADATA = "sha256"  # every object the gallery writes carries its sha256
MULTIPART_BYTES = 64 << 20  # uploads and downloads above this go in parts
_MISSING = {"NoSuchKey", "404", "NotFound"}
# 409: a concurrent conditional write to the same key is in progress.
_REFUSED = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class Refused(Exception):
    """A conditional request whose condition did not hold."""


@dataclass(frozen=True)
class Head:
    etag: str
    size: int
    sha256: str | None  # None for an object written by another tool


class S3Prefix:
    """The objects under an ``s3://bucket/prefix`` location, addressed by gallery key."""

    def __init__(self, where: GalleryLocation) -> None:
        if not where.is_s3:
            raise GalleryError(f"{where.root!r} is not an s3:// location")
        self.where = where
        self.bucket, _, self.prefix = where.root.removeprefix("s3://").partition("/")
        self.client = _client(where.s3)

    def key(self, key: str) -> str:
        """The object key of a gallery key."""
        return f"{self.prefix}/{key}".strip("/") if self.prefix else key.strip("/")

    def request(self, operation: str, key: str | None = None, **arguments: Any) -> Any:
        if key is not None:
            arguments["Key"] = self.key(key)
        with self.errors(f"{operation} {arguments.get('Key', '')}"):
            return getattr(self.client, operation)(Bucket=self.bucket, **arguments)

    def head(self, key: str) -> Head:
        reply = self.request("head_object", key)
        metadata = {k.lower(): v for k, v in reply.get("Metadata", {}).items()}
        return Head(str(reply["ETag"]), int(reply["ContentLength"]), metadata.get(SHA256_METADATA))

    def pages(self, prefix: str, delimiter: str = "") -> Iterator[dict[str, Any]]:
        """The listing pages of object keys starting with ``prefix`` (an object key)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, **({"Delimiter": delimiter} if delimiter else {})
        )
        with self.errors(f"listing {prefix}"):
            yield from pages

    def upload(self, key: str, path: str, sha256: str) -> None:
        """A local file as ``key`` with its sha256, in parts above ``MULTIPART_BYTES``."""
        with self.errors(f"upload of {key}"):
            self.client.upload_file(path, self.bucket, self.key(key), Config=_transfer_config(),
                                    ExtraArgs={"Metadata": {SHA256_METADATA: sha256}})  # fmt: skip

    def download(self, key: str, path: str) -> None:
        with self.errors(f"download of {key}"):
            self.client.download_file(self.bucket, self.key(key), path, Config=_transfer_config())

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise FileNotFoundError(f"{self.where.root}: {what}") from None
            if code in _REFUSED:
                raise Refused(code) from None
            if code == "NoSuchBucket":
                raise GalleryError(
                    f"bucket {self.bucket!r} of the {self.where.describe()} does not exist: "
                    "create it, or correct the setting"
                ) from None
            raise GalleryError(
                f"the store refused {what} ({self.where.describe()}): {error}"
            ) from None
        except BotoCoreError as error:
            raise GalleryError(
                f"the object store of the {self.where.describe()} cannot be reached: {error}"
            ) from None


@functools.cache
def _client(s3: S3Settings) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=s3.region,
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path" if s3.path_style else "virtual"},
    )
    return boto3.session.Session().client("s3", endpoint_url=s3.endpoint, config=config)


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES)
