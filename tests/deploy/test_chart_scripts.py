"""The scripts the chart puts in its pods, run here: the night's first step (night-start.py:
the batch id and the manifest), the nightly container's command line, the Spark executors'
start (with a stand-in java that prints what it was given), and a local intake volume
mounted where the driver and the executors read the batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.chart_support import CHART, rendered, template, with_required

# The nightly container's variable naming the driver pod (the executors' owner).
DRIVER_POD_ENV = "DEDUP_SPARK__EXTRA_CONF__spark.kubernetes.driver.pod.name"
EXECUTOR_ENV = {
    "SPARK_EXECUTOR_MEMORY": "4g",
    "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@driver:7078",
    "SPARK_EXECUTOR_ID": "3",
    "SPARK_EXECUTOR_CORES": "2",
    "SPARK_APPLICATION_ID": "spark-app-1",
    "SPARK_EXECUTOR_POD_IP": "10.1.2.3",
    "SPARK_RESOURCE_PROFILE_ID": "0",
    "SPARK_EXECUTOR_POD_NAME": "dedup-night-exec-3",
    # Out of order in the environment; the JVM must get them in their numbered order.
    "SPARK_JAVA_OPT_10": "-Dspark.tenth=j",
    "SPARK_JAVA_OPT_1": "-Dspark.driver.port=7078",
    "SPARK_JAVA_OPT_0": "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "SPARK_JAVA_OPT_2": "-Dspark.with.space=a b",
}


def test_the_executor_starts_spark_s_backend_with_the_driver_s_settings(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "java"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor arg in "$@"; do echo "$arg"; done\n', encoding="utf-8")
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "SPARK_HOME": "/spark", **EXECUTOR_ENV}
    done = subprocess.run(
        ["bash", str(CHART / "files" / "spark-executor.sh"), "executor"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    args = done.stdout.splitlines()
    assert args[:2] == ["-Xms4g", "-Xmx4g"]
    assert args[2:6] == [
        "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "-Dspark.driver.port=7078",
        "-Dspark.with.space=a b",
        "-Dspark.tenth=j",
    ]
    assert args[6:9] == [
        "-cp", "/spark/jars/*", "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
    ]  # fmt: skip
    given = dict(zip(args[9::2], args[10::2], strict=True))
    assert given == {
        "--driver-url": EXECUTOR_ENV["SPARK_DRIVER_URL"],
        "--executor-id": "3",
        "--cores": "2",
        "--app-id": "spark-app-1",
        "--hostname": "10.1.2.3",
        "--resourceProfileId": "0",
        "--podName": "dedup-night-exec-3",
    }


def test_a_local_intake_root_is_a_volume_of_the_driver_and_of_every_executor(
    tmp_path: Path,
) -> None:
    claim = {"persistentVolumeClaim": {"claimName": "intake"}}
    values = with_required({"nightly": {"intake": {"root": "/intake", "volume": claim}}})
    docs = [doc for doc in yaml.safe_load_all(template(values, tmp_path)) if doc]
    cron = next(doc for doc in docs if doc["kind"] == "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {"name": "intake", **claim} in pod["volumes"]
    for container in pod["initContainers"] + pod["containers"]:
        assert {"name": "intake", "mountPath": "/intake", "readOnly": True} in container[
            "volumeMounts"
        ], container["name"]
    config = next(doc for doc in docs if doc["metadata"]["name"].endswith("-settings"))
    executor = yaml.safe_load(config["data"]["executor-pod.yaml"])["spec"]
    assert {"name": "intake", **claim} in executor["volumes"]
    mounts = executor["containers"][0]["volumeMounts"]
    assert {"name": "intake", "mountPath": "/intake", "readOnly": True} in mounts
    settings = yaml.safe_load(config["data"]["settings.yaml"])
    assert "manifest" not in settings  # photo paths stay relative to the batch folder


def night_start(tmp_path: Path, root: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHART / "files" / "night-start.py")],
        env={**os.environ, "DEDUP_NIGHT_TIME_ZONE": "Pacific/Kiritimati",
             "DEDUP_INTAKE_ROOT": root, "DEDUP_NIGHT_DIR": str(tmp_path / "night"), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def batch_today(zone: str) -> str:
    import datetime as dt
    import zoneinfo

    return dt.datetime.now(zoneinfo.ZoneInfo(zone)).date().isoformat()


def test_night_start_names_the_batch_by_the_date_in_the_time_zone(tmp_path: Path) -> None:
    batch = batch_today("Pacific/Kiritimati")  # UTC+14: a day ahead of UTC most of the day
    folder = tmp_path / "intake" / batch
    folder.mkdir(parents=True)
    (folder / "manifest.csv").write_text("enrollment_id\n", encoding="utf-8")
    done = night_start(tmp_path, str(tmp_path / "intake"))
    assert done.returncode == 0, done.stderr
    night = tmp_path / "night"
    assert (night / "batch-id").read_text() == batch
    assert (night / "manifest").read_text() == str(folder / "manifest.csv")


def test_night_start_copies_a_remote_manifest_into_the_pod(tmp_path: Path) -> None:
    folder = tmp_path / "bucket" / "2026-12-01"
    folder.mkdir(parents=True)
    (folder / "manifest.csv").write_text("enrollment_id\nE1\n", encoding="utf-8")
    root = (tmp_path / "bucket").as_uri()  # a URI root takes the copying path, as s3:// does
    done = night_start(tmp_path, root, DEDUP_BATCH_ID="2026-12-01")
    assert done.returncode == 0, done.stderr
    copied = Path((tmp_path / "night" / "manifest").read_text())
    assert copied == tmp_path / "night" / "intake" / "2026-12-01" / "manifest.csv"
    assert copied.read_text() == "enrollment_id\nE1\n"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEDUP_BATCH_ID": "2026-12-01"}, "no manifest at"),
        ({"DEDUP_NIGHT_TIME_ZONE": "Mars/Olympus"}, "time zone 'Mars/Olympus' is unknown"),
    ],
)
def test_night_start_stops_the_night_with_a_reason(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    done = night_start(tmp_path, str(tmp_path / "intake"), **env)
    assert done.returncode == 1 and expected in done.stderr
    assert not (tmp_path / "night" / "batch-id").exists()


def test_the_nightly_command_passes_the_batch_the_manifest_and_the_driver_s_name(
    tmp_path: Path,
) -> None:
    cron = rendered("defaults").one("CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [nightly] = pod["containers"]
    assert nightly["command"][:2] == ["/usr/bin/tini", "--"]
    night = tmp_path / "night"
    night.mkdir()
    (night / "batch-id").write_text("2026-12-01", encoding="utf-8")
    (night / "manifest").write_text("/night/intake/2026-12-01/manifest.csv", encoding="utf-8")
    fake = tmp_path / "bin" / "dedup"
    fake.parent.mkdir()
    # A stand-in dedup in Python, as the real one is (a POSIX sh would drop the dotted name).
    fake.write_text(
        f"#!{sys.executable}\nimport os, sys\nprint(*sys.argv[1:], sep='\\n')\n"
        f"print('{DRIVER_POD_ENV}=' + os.environ['{DRIVER_POD_ENV}'])\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    # The pod's /night is this test's folder; the rest is the container's command as rendered.
    command = [part.replace("/night/", f"{night}/") for part in nightly["command"][2:]]
    pod_name = {e["name"]: e for e in nightly["env"]}[DRIVER_POD_ENV]
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    done = subprocess.run(
        [*command, "--target-fpir", "0.001"],
        env={"PATH": f"{fake.parent}:/usr/bin:/bin", DRIVER_POD_ENV: "dedup-nightly-29-x"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "nightly", "--config", "/etc/dedup/settings.yaml", "--batch-id", "2026-12-01",
        "--manifest", "/night/intake/2026-12-01/manifest.csv", "--target-fpir", "0.001",
        f"{DRIVER_POD_ENV}=dedup-nightly-29-x",
    ]  # fmt: skip
