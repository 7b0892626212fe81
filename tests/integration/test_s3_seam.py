"""The lake's files and tables on a real S3-compatible server (moto's server mode, started by
``scripts/s3-server``), through the clients the jobs use: pyarrow for work files, delta-rs for
tables. No Spark here: ``test_lake_s3.py`` runs the jobs."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from dedup.contracts.schemas import BATCH_RUNS
from dedup.errors import LakeError
from dedup.s3_settings import S3Settings
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.lake.location import Lake
from tests.conftest import make_settings
from tests.s3_support import free_port, s3_options


def s3_run(endpoint: str, bucket: str, batch: str = "b1") -> BatchRun:
    settings = make_settings(f"s3://{bucket}/lake", s3=s3_options(endpoint))
    return BatchRun(batch, settings)


def test_work_files_are_written_whole_read_back_and_listed(
    s3_endpoint: str, s3_bucket: str
) -> None:
    run = s3_run(s3_endpoint, s3_bucket)
    work = run.begin("match")
    assert work.location == f"s3://{s3_bucket}/lake/_work/match/b1"
    assert work.exists("settings.json")
    assert '"path_style": true' in work.read_text("settings.json")
    assert "AWS_SECRET" not in work.read_text("settings.json")

    rows = pa.table({"probe_id": ["a", "b"], "score": [0.95, 0.91]})
    assert not work.exists("candidates.parquet")
    work.write_parquet("candidates.parquet", rows)
    assert work.read_parquet("candidates.parquet").equals(rows)
    work.write_bytes("nested/first_run", b"2026-12-01T00:00:00+00:00")
    assert work.files() == ["candidates.parquet", "nested/first_run", "settings.json"]
    assert run.work("stage").files() == []  # another job's folder: nothing yet
    assert not run.work("stage").exists()

    copy = work.local_copy("settings.json")  # what `dedup nightly` hands its steps
    assert copy.read_text(encoding="utf-8") == work.read_text("settings.json")
    assert not str(copy).startswith("s3:")


def test_a_write_that_fails_leaves_the_object_as_it_was(s3_endpoint: str, s3_bucket: str) -> None:
    """The object is prepared whole before its one PUT: a write failing part-way (here,
    Parquet refusing a column) leaves the earlier object, or none, never a part of one."""
    work = s3_run(s3_endpoint, s3_bucket).work("match")
    good = pa.table({"probe_id": ["a"]})
    work.write_parquet("candidates.parquet", good)
    interval = pa.scalar((1, 2, 3), pa.month_day_nano_interval())
    unwritable = pa.table({"probe_id": ["b"], "when": pa.array([interval])})
    with pytest.raises(pa.ArrowNotImplementedError):
        work.write_parquet("candidates.parquet", unwritable)
    assert work.read_parquet("candidates.parquet").equals(good)
    with pytest.raises(pa.ArrowNotImplementedError):
        work.write_parquet("never.parquet", unwritable)
    assert not work.exists("never.parquet")
    assert work.files() == ["candidates.parquet"]


def test_tables_are_written_and_read_with_delta_rs(s3_endpoint: str, s3_bucket: str) -> None:
    settings = make_settings(f"s3://{s3_bucket}/lake", s3=s3_options(s3_endpoint))
    tables = DeltaRsTables(Lake.of(settings))
    assert tables.open("batch_runs") is None
    row = {
        "batch_id": "b1",
        "step": "stage",
        "started_at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        "finished_at": dt.datetime(2026, 12, 1, 0, 5, tzinfo=dt.UTC),
        "figures": "{}",
        "settings_hash": "0" * 16,
    }

    tables.insert_new("batch_runs", pa.Table.from_pylist([row], BATCH_RUNS))
    tables.insert_new("batch_runs", pa.Table.from_pylist([row], BATCH_RUNS))  # the same key
    assert tables.count("batch_runs", pc.field("batch_id") == "b1") == 1


def test_concurrent_commits_all_land(s3_endpoint: str, s3_bucket: str) -> None:
    """Commits are put-if-absent: writers racing for one version never overwrite each other's
    log entry (with a plain PUT, some appends would vanish)."""
    from deltalake import DeltaTable, write_deltalake

    lake = Lake(f"s3://{s3_bucket}/lake", S3Settings(**s3_options(s3_endpoint)))
    options = lake.storage_options()
    uri = lake.table("race")
    write_deltalake(uri, pa.table({"x": pa.array([], pa.int64())}), storage_options=options)
    failures: list[BaseException] = []

    def append(writer: int) -> None:
        try:
            for n in range(2):
                row = pa.table({"x": [writer * 10 + n]})
                write_deltalake(uri, row, mode="append", storage_options=options)
        except BaseException as error:  # collected, then failed on below
            failures.append(error)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    table = DeltaTable(uri, storage_options=options)
    assert sorted(table.to_pyarrow_table()["x"].to_pylist()) == sorted(
        w * 10 + n for w in range(4) for n in range(2)
    )
    assert table.version() == 8


def test_a_missing_bucket_is_refused_naming_the_setting(s3_endpoint: str) -> None:
    run = s3_run(s3_endpoint, "no-such-bucket")
    with pytest.raises(LakeError, match=r"bucket 'no-such-bucket' .*setting `lake` = s3://"):
        run.begin("stage")
    with pytest.raises(LakeError, match=r"bucket 'no-such-bucket' .*does not exist"):
        DeltaRsTables(run.lake_root)


def test_an_unreachable_endpoint_is_refused_quickly_naming_the_setting() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    run = s3_run(nobody, "lake")
    started = time.monotonic()
    with pytest.raises(LakeError, match=rf"cannot be reached .*`s3.endpoint` = {nobody}"):
        run.begin("embed")
    assert time.monotonic() - started < 30


def test_a_lake_location_of_another_scheme_is_refused() -> None:
    with pytest.raises(LakeError, match="only local folders and s3://"):
        Lake("gs://bucket/lake")
    with pytest.raises(LakeError, match="names no bucket"):
        Lake("s3:///lake")


@pytest.mark.parametrize("store", ["missing bucket", "dead endpoint"])
def test_the_command_line_says_which_setting_is_wrong_in_one_line(
    s3_endpoint: str, tmp_path: Path, store: str
) -> None:
    endpoint = s3_endpoint if store == "missing bucket" else f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "settings.yaml"
    settings = {"lake": "s3://no-such-bucket/lake", "s3": s3_options(endpoint)}
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUP_")}
    env["COLUMNS"] = "1000"  # the console wraps at its width: keep the one line whole
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "embed", "--batch-id", "b1", "--config", config],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "setting `lake` = s3://no-such-bucket/lake" in lines[0]
    assert f"`s3.endpoint` = {endpoint}" in lines[0]
    expected = "does not exist" if store == "missing bucket" else "cannot be reached"
    assert expected in lines[0] and "Traceback" not in done.stderr
