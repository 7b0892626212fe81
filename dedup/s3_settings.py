"""The ``s3`` section of the settings: the S3-compatible store behind ``s3://`` locations.

Every client reads the same section (Spark's s3a, delta-rs, pyarrow), so the lake is one
place whichever engine opens it. Credentials are never settings: each client takes them from
the environment and the standard AWS chain (variables, profile, web identity, instance role),
so no settings file, log or table ever holds one.

    >>> S3Settings(endpoint="http://127.0.0.1:9000", path_style=True).allows_http
    True
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator


class S3Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # None: AWS's own endpoint for the region. A compatible store: its URL, such as
    # http://minio:9000 (an http:// URL allows plain HTTP).
    endpoint: str | None = None
    region: str = "us-east-1"
    # Path-style requests (host/bucket/key), which most S3-compatible stores need; False:
    # virtual-hosted style (bucket.host/key), AWS's default.
    path_style: bool = False

    @field_validator("endpoint")
    @classmethod
    def _an_http_url(cls, endpoint: str | None) -> str | None:
        if endpoint is None:
            return None
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{endpoint!r} is not an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("the endpoint URL must not hold credentials: use the environment")
        return endpoint.rstrip("/")

    @property
    def store(self) -> str:
        """The store in words, for an error message: its endpoint, or AWS's in the region.

        >>> S3Settings(region="eu-west-1").store
        'AWS in eu-west-1'
        """
        return self.endpoint or f"AWS in {self.region}"

    @property
    def allows_http(self) -> bool:
        """Whether requests go over plain HTTP (an ``http://`` endpoint: a test server)."""
        return self.endpoint is not None and self.endpoint.startswith("http://")
