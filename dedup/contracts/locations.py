"""Where data lives: a location setting or a photo path is a URI or a local path."""

from __future__ import annotations

import re

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(location: str) -> bool:
    """Whether ``location`` names a filesystem by scheme (``s3://``, ``file://``) rather than
    a local path (which may itself hold ``://`` further on, as a folder name can).

    >>> is_uri("s3://bucket/lake"), is_uri("/data/x://y")
    (True, False)
    """
    return _URI.match(location) is not None
