"""Fetching the Delta jars with the real ``mvn``, which goes to the Maven repository (the
folder, cache and no-Maven paths, which run nothing, are in ``tests/unit/test_jars.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dedup.errors import DependencyError
from dedup.settings import SparkSettings
from pipelines.spark.jars import delta_jars


def test_a_failed_fetch_leaves_no_partial_jar(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spark = SparkSettings(jar_cache=cache, delta_version="0.0.0-no-such-version")
    with pytest.raises(DependencyError, match="could not fetch"):
        delta_jars(spark)
    assert list(cache.iterdir()) == []
