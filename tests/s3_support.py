"""A real S3-compatible server for the tests: moto's server mode, started by the project's own
``scripts/s3-server`` as a subprocess on a free loopback port. Tests talk to it over HTTP
with the real clients (Spark's s3a, delta-rs, pyarrow); boto3 (which moto brings) only
creates buckets, as an operator would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "s3-server"
# moto checks no credentials, but every client wants some: these stand in for the AWS chain.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "dedup-test",
    "AWS_SECRET_ACCESS_KEY": "dedup-test-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll ``url`` until it answers 200; False (the process killed) when the process died or
    the time ran out first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return True
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            return False
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[str]:
    """The server's endpoint URL while the block runs."""
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(SCRIPT), str(port)],
        env={**os.environ, "MOTO_SERVER": str(server)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    if not wait_until_ready(f"{url}/moto-api/", process, timeout_s=60):
        raise RuntimeError(f"the S3 server ({SCRIPT}) did not become ready")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def new_bucket(endpoint: str) -> str:
    """A bucket of its own for one test (Hadoop caches one s3a file system per bucket)."""
    import boto3

    name = f"lake-{uuid.uuid4().hex[:12]}"
    client: Any = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return name


def s3_options(endpoint: str) -> dict[str, Any]:
    """The ``s3`` settings section for the test server."""
    return {"endpoint": endpoint, "region": "us-east-1", "path_style": True}


@contextmanager
def jvm_credentials(spark: Any) -> Iterator[None]:
    """The test credentials as the Spark JVM's system properties while the block runs: the
    session started before the server's fixture set the environment, and a JVM's environment
    is fixed at its start (the AWS chain also reads ``aws.accessKeyId``, ``aws.secretKey``)."""
    system = spark._jvm.java.lang.System
    properties = {
        "aws.accessKeyId": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws.secretKey": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
    for name, value in properties.items():
        system.setProperty(name, value)
    try:
        yield
    finally:
        for name in properties:
            system.clearProperty(name)
