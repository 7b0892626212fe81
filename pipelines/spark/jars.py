"""Delta Lake jars for Spark: fetched from Maven Central with ``mvn``, or a pre-fetched folder.

Air-gapped registries copy the jars into a folder and set ``spark.jar_dir``; nothing is
fetched then. Otherwise ``mvn dependency:copy`` puts them into ``spark.jar_cache`` once, via a
temporary folder renamed into place, so an interrupted fetch never leaves a half jar behind.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from dedup.errors import DependencyError
from dedup.settings import Settings, SparkSettings
from pipelines.lake.location import is_s3

# Pinned so the fetch is reproducible and needs no plugin resolution of "latest".
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"


def delta_artifacts(spark: SparkSettings) -> list[tuple[str, str]]:
    """(Maven coordinate, jar file name) of each jar Delta Lake needs on Spark."""
    v, scala = spark.delta_version, spark.scala_version
    return [
        (f"io.delta:delta-spark_{scala}:{v}", f"delta-spark_{scala}-{v}.jar"),
        (f"io.delta:delta-storage:{v}", f"delta-storage-{v}.jar"),
    ]


def s3a_artifacts(spark: SparkSettings) -> list[tuple[str, str]]:
    """(Maven coordinate, jar file name) of Spark's s3a file system: ``hadoop-aws`` of the
    Hadoop that pyspark ships, and the shaded AWS SDK bundle that Hadoop release was built
    and tested against (hadoop-aws 3.3.4 declares aws-java-sdk-bundle 1.12.262)."""
    hadoop, sdk = spark.hadoop_aws_version, spark.aws_sdk_bundle_version
    return [
        (f"org.apache.hadoop:hadoop-aws:{hadoop}", f"hadoop-aws-{hadoop}.jar"),
        (f"com.amazonaws:aws-java-sdk-bundle:{sdk}", f"aws-java-sdk-bundle-{sdk}.jar"),
    ]


def uses_s3a(settings: Settings) -> bool:
    """Whether the session needs Spark's s3a file system (``spark.s3a_jars``; by default,
    when the lake is an s3:// location)."""
    chosen = settings.spark.s3a_jars
    return is_s3(settings.lake) if chosen is None else chosen


def _from_folder(folder: Path, names: list[str]) -> list[Path]:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DependencyError(
            f"jar folder {folder} lacks {', '.join(missing)}; copy them there "
            "(from Maven Central) or unset spark.jar_dir to let dedup fetch them"
        )
    return [folder / n for n in names]


def fetch_with_maven(coordinate: str, name: str, cache: Path) -> Path:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DependencyError(
            "Maven (mvn) is needed to fetch the Delta Lake jars: install it "
            "(apt-get install maven) or point spark.jar_dir at a folder of pre-fetched jars"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        command = [
            mvn,
            "-q",
            "-B",
            f"{DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={coordinate}",
            f"-DoutputDirectory={tmp}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        fetched = Path(tmp) / name
        if done.returncode != 0 or not fetched.is_file():
            raise DependencyError(
                f"mvn could not fetch {coordinate} from Maven Central "
                f"(exit {done.returncode}): {(done.stdout + done.stderr)[-800:]}"
            )
        fetched.replace(cache / name)
    return cache / name


def delta_jars(spark: SparkSettings, *, s3a: bool = False) -> list[Path]:
    """Paths of the Delta jars (and with ``s3a``, those of Spark's S3 file system), fetching
    any that the cache lacks."""
    artifacts = delta_artifacts(spark) + (s3a_artifacts(spark) if s3a else [])
    names = [name for _, name in artifacts]
    if spark.jar_dir is not None:
        return _from_folder(spark.jar_dir, names)
    return [
        spark.jar_cache / name
        if (spark.jar_cache / name).is_file()
        else fetch_with_maven(coordinate, name, spark.jar_cache)
        for coordinate, name in artifacts
    ]
