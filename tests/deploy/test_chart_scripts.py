"""The scripts the chart puts in its pods, run here: the Spark executors' start (with a
stand-in java that prints what it was given), and a local intake volume mounted where the
driver and the executors read the batch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy.chart_support import CHART, template, with_required

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
