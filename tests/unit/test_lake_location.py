"""Where the lake is and what each client is told to open it: the ``s3`` settings, delta-rs's
storage options, Hadoop's s3a options, the s3a jars, and where work files and logs go. No
server here (``tests/integration/test_s3_seam.py`` talks to one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dedup.errors import ConfigError, DependencyError
from dedup.settings import Settings, SparkSettings, default_cache_dir, load_settings
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.location import Lake
from pipelines.spark.jars import delta_jars, s3a_artifacts, uses_s3a
from pipelines.spark.session import s3a_conf

TEST_STORE = {"endpoint": "http://127.0.0.1:9000/", "path_style": True, "region": "eu-west-1"}


def s3_settings(**overrides: object) -> Settings:
    return load_settings(overrides={"lake": "s3://registry/lake", "s3": TEST_STORE, **overrides})


def test_an_endpoint_must_be_an_http_url_without_credentials() -> None:
    with pytest.raises(ConfigError, match=r"s3\.endpoint: .*'ftp://store' is not an http"):
        load_settings(overrides={"s3": {"endpoint": "ftp://store"}})
    with pytest.raises(ConfigError, match=r"s3\.endpoint: .*must not hold credentials"):
        load_settings(overrides={"s3": {"endpoint": "https://key:secret@store"}})


def test_delta_rs_commits_by_conditional_put_and_never_by_unsafe_rename() -> None:
    options = Lake.of(s3_settings()).storage_options()
    assert options == {
        "AWS_REGION": "eu-west-1",
        "AWS_CONDITIONAL_PUT": "etag",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
    }
    aws = Lake("s3://registry/lake").storage_options()
    assert aws is not None and "AWS_ENDPOINT_URL" not in aws and "AWS_ALLOW_HTTP" not in aws
    assert Lake("/data/lake").storage_options() is None


def test_s3a_is_told_the_store_but_never_a_credential() -> None:
    conf = s3a_conf(s3_settings())
    assert conf["fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert conf["fs.s3a.endpoint.region"] == "eu-west-1"
    assert conf["fs.s3a.path.style.access"] == "true"
    assert conf["fs.s3a.connection.ssl.enabled"] == "false"
    assert "DefaultAWSCredentialsProviderChain" in conf["fs.s3a.aws.credentials.provider"]
    assert not [key for key in conf if "key" in key or "secret" in key or "token" in key]


def test_spark_and_delta_rs_name_the_same_table() -> None:
    lake = Lake.of(s3_settings())
    assert lake.table("faces") == "s3://registry/lake/faces"
    assert lake.spark_table("faces") == "s3a://registry/lake/faces"
    assert Lake("/data/lake/").spark_table("faces") == "/data/lake/faces"


def test_the_s3a_jars_come_with_an_s3_lake_or_when_asked(tmp_path: Path) -> None:
    assert uses_s3a(s3_settings()) and not uses_s3a(load_settings(overrides={"lake": "/l"}))
    assert uses_s3a(load_settings(overrides={"lake": "/l", "spark": {"s3a_jars": True}}))
    spark = SparkSettings(jar_dir=tmp_path)
    assert [coordinate for coordinate, _ in s3a_artifacts(spark)] == [
        "org.apache.hadoop:hadoop-aws:3.3.4",
        "com.amazonaws:aws-java-sdk-bundle:1.12.262",
    ]
    for name in ("delta-spark_2.12-3.3.2.jar", "delta-storage-3.3.2.jar"):
        (tmp_path / name).write_bytes(b"jar")
    assert len(delta_jars(spark)) == 2
    with pytest.raises(DependencyError, match=r"hadoop-aws-3\.3\.4\.jar"):
        delta_jars(spark, s3a=True)


def test_work_files_go_to_the_lake_and_logs_stay_local(tmp_path: Path) -> None:
    work = BatchRun("b1", s3_settings()).work("stage")
    assert work.location == "s3://registry/lake/_work/stage/b1"
    assert work.spark_path("results") == "s3a://registry/lake/_work/stage/b1/results"
    assert work.log_file("spark.log") == default_cache_dir() / "logs" / "stage" / "b1" / "spark.log"
    chosen = BatchRun("b1", s3_settings(log_dir=str(tmp_path))).work("embed")
    assert chosen.log_file("ray.log") == tmp_path / "embed" / "b1" / "ray.log"
    local = BatchRun("b1", load_settings(overrides={"lake": str(tmp_path / "lake")})).work("match")
    assert local.log_file("ray.log") == tmp_path / "lake" / "_work" / "match" / "b1" / "ray.log"


def test_an_object_store_lake_needs_a_review_database_url() -> None:
    with pytest.raises(ConfigError, match=r"set adjudication\.database_url"):
        s3_settings().adjudication_database_url()
    given = s3_settings(adjudication={"database_url": "postgresql+psycopg://db/dedup"})
    assert given.adjudication_database_url() == "postgresql+psycopg://db/dedup"
