"""Delta jars: a pre-fetched folder (air-gapped registries) or mvn into the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from dedup.errors import DependencyError
from dedup.settings import SparkSettings
from pipelines.spark.jars import delta_artifacts, delta_jars


def names(spark: SparkSettings) -> list[str]:
    return [name for _, name in delta_artifacts(spark)]


def test_artifacts_follow_the_configured_versions() -> None:
    spark = SparkSettings(delta_version="9.9.9", scala_version="2.13")
    assert delta_artifacts(spark) == [
        ("io.delta:delta-spark_2.13:9.9.9", "delta-spark_2.13-9.9.9.jar"),
        ("io.delta:delta-storage:9.9.9", "delta-storage-9.9.9.jar"),
    ]


def test_prefetched_folder_is_used_without_fetching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spark = SparkSettings(jar_dir=tmp_path)
    for name in names(spark):
        (tmp_path / name).write_bytes(b"jar")
    monkeypatch.setattr(
        "pipelines.spark.jars.shutil.which", lambda _: pytest.fail("must not look for mvn")
    )
    assert delta_jars(spark) == [tmp_path / n for n in names(spark)]


def test_prefetched_folder_missing_a_jar_names_it(tmp_path: Path) -> None:
    spark = SparkSettings(jar_dir=tmp_path)
    (tmp_path / names(spark)[0]).write_bytes(b"jar")
    with pytest.raises(DependencyError, match=names(spark)[1]):
        delta_jars(spark)


def test_cached_jars_are_not_fetched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spark = SparkSettings(jar_cache=tmp_path)
    for name in names(spark):
        (tmp_path / name).write_bytes(b"jar")
    monkeypatch.setattr(
        "pipelines.spark.jars.subprocess.run", lambda *a, **k: pytest.fail("fetched again")
    )
    assert delta_jars(spark) == [tmp_path / n for n in names(spark)]


def test_without_maven_the_error_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pipelines.spark.jars.shutil.which", lambda _: None)
    with pytest.raises(DependencyError, match="jar_dir"):
        delta_jars(SparkSettings(jar_cache=tmp_path / "cache"))
