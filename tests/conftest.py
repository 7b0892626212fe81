"""Shared fixtures: one small local Spark session with Delta for the whole run (UI off, two
cores, two shuffle partitions), settings pointing into a per-test lake, the public portraits,
the exported dlib model and the lakes the embed and match tests run on, and the services
(Pushgateway, PostgreSQL, the review service)."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from filelock import FileLock

from dedup.demo.batch import DemoBatch
from dedup.settings import Settings, load_settings

# Every JVM a test starts (this process's session and every command it runs) lives for
# seconds to minutes on a small batch: the quick compiler alone starts Spark's first job in
# about four fifths of the time that the optimising one takes to warm up (measured on the
# stage job, 2 cores). Subprocesses inherit it through the environment.
os.environ.setdefault("DEDUP_SPARK__JAVA_OPTIONS", "-XX:TieredStopAtLevel=1")


T = TypeVar("T")


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]) -> T:
    """``build(folder)``'s value, built once per run in a folder that every xdist worker of the
    run shares (a worker that needs it while another builds it waits for that build): the
    lakes that several test modules start from take minutes of both cores to build."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder = root / "built-once" / name
    value = folder / "value.pickle"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if not value.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            built = build(folder)
            value.with_suffix(".part").write_bytes(pickle.dumps(built))
            value.with_suffix(".part").rename(value)
    loaded: T = pickle.loads(value.read_bytes())
    return loaded


def make_settings(lake: Path | str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "lake": str(lake),
        "spark": {"master": "local[2]", "shuffle_partitions": 2},
    }
    values.update(overrides)
    return load_settings(overrides=values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "lake")


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one session of the run, with Spark's s3a file system on its classpath so that the
    tests of an s3:// lake share it (``pipelines.spark.session.configure_s3a``)."""
    from pipelines.spark.session import spark_session

    settings = make_settings(
        tmp_path_factory.mktemp("lake"),
        spark={"master": "local[2]", "shuffle_partitions": 2, "s3a_jars": True},
    )
    session = spark_session(settings, app_name="dedup-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server on a free loopback port (``scripts/s3-server``: moto's
    server mode); its endpoint URL. The AWS variables every client reads stand in for the
    credential chain for the whole session."""
    from tests.s3_support import CREDENTIALS, s3_server

    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    with s3_server() as endpoint:
        yield endpoint
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the S3 server, for this test alone."""
    from tests.s3_support import new_bucket

    return new_bucket(s3_endpoint)


@pytest.fixture(scope="module")
def one_faiss_thread() -> Iterator[None]:
    """On the small indexes of the tests, OpenMP start-up costs more than the work (7x on two
    busy cores). Modules that build FAISS indexes use it with ``pytest.mark.usefixtures``."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="session")
def portraits() -> Path:
    from dedup.demo.portraits import fetch_portraits

    return fetch_portraits()


@pytest.fixture(scope="session")
def dlib_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dlib's face recogniser exported to ONNX once per run, for the embed and match jobs."""
    from dedup.models.dlib_onnx import ensure_dlib_export

    def export(folder: Path) -> Path:
        ensure_dlib_export(folder / "dlib-resnet-v1.onnx")
        return folder / "dlib-resnet-v1.onnx"

    return built_once(tmp_path_factory, "dlib-model", export)


@pytest.fixture(scope="session")
def embed_batch(tmp_path_factory: pytest.TempPathFactory, portraits: Path) -> DemoBatch:
    """The demo batch the embed job's tests stage and embed (seed 11)."""
    from dedup.demo.batch import build_demo_batch

    return build_demo_batch(tmp_path_factory.mktemp("batches") / "b", portraits, seed=11)


@pytest.fixture(scope="session")
def staged_embed_lake(
    spark: Any, embed_batch: DemoBatch, dlib_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """A lake with ``embed_batch`` staged and nothing embedded, built once per run: the embed
    job's tests each take their own copy (``tests.night_support.copy_lake``)."""
    from tests.night_support import EMBED_BATCH, settings_for
    from tests.support import stage

    def build(folder: Path) -> Settings:
        settings = settings_for(folder / "lake", dlib_model)
        stage(spark, settings, EMBED_BATCH, embed_batch.manifest)
        return settings

    return built_once(tmp_path_factory, "staged-embed-lake", build)


@pytest.fixture(scope="session")
def match_batches(tmp_path_factory: pytest.TempPathFactory, portraits: Path) -> list[DemoBatch]:
    """The match job's two demo batches (``tests.night_support.build_match_batches``)."""
    from tests.night_support import build_match_batches

    return built_once(
        tmp_path_factory, "match-batches", lambda folder: build_match_batches(folder, portraits)
    )


@pytest.fixture(scope="session")
def embedded_lake(
    spark: Any,
    match_batches: list[DemoBatch],
    dlib_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """A lake with both match batches staged and embedded, and no match run yet: built once
    per run (``built_once``), so a test that writes to it takes its own copy (``match_lake``)."""
    from tests.night_support import FIRST, SECOND, settings_for, stage_and_embed

    def build(folder: Path) -> Settings:
        settings = settings_for(folder / "lake", dlib_model)
        stage_and_embed(spark, settings, dict(zip((FIRST, SECOND), match_batches, strict=True)))
        return settings

    return built_once(tmp_path_factory, "embedded-lake", build)


@pytest.fixture
def match_lake(embedded_lake: Settings, tmp_path: Path) -> Settings:
    """This test's own copy of ``embedded_lake``, with a gallery of its own."""
    from tests.night_support import copy_lake

    return copy_lake(embedded_lake, tmp_path)


@pytest.fixture(scope="session")
def pushgateway() -> Iterator[str]:
    """A real Prometheus Pushgateway (Debian's package, installed by scripts/install-services)
    on a free loopback port; its base URL."""
    from tests.monitoring_support import running_pushgateway

    with running_pushgateway() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server (Debian's package, started by scripts/postgres)."""
    from tests.review_support import PostgresServer

    try:
        server = PostgresServer()
    except RuntimeError as exc:
        pytest.fail(f"{exc}: run scripts/install-services")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def review_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh, migrated review database on each backend in turn."""
    from tests.review_support import engines

    yield from engines(request.param, tmp_path, lambda: request.getfixturevalue("postgres_server"))


@pytest.fixture
def pg_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh, migrated review database on PostgreSQL."""
    from tests.review_support import engines

    yield from engines("postgresql", tmp_path, lambda: request.getfixturevalue("postgres_server"))


@pytest.fixture
def world(review_engine: Any) -> Any:
    """The review service on each backend, with one account per role."""
    from tests.review_support import review_world

    return review_world(review_engine)
