"""The nightly pod's first step: name the night's batch and put its manifest within reach.

The convention (docs/operations.md, "Installing on Kubernetes"): the batch id is the date of
the run in the CronJob's time zone (YYYY-MM-DD), and the manifest is
``<intake root>/<batch id>/<manifest name>``. A local root (a volume mounted in the driver
and in every executor) is used where it is. ``dedup nightly`` reads a local manifest, so an
``s3://`` root's manifest is copied into the pod first; its photo paths are then URIs.

Reads DEDUP_NIGHT_TIME_ZONE, DEDUP_INTAKE_ROOT, DEDUP_MANIFEST_NAME and DEDUP_NIGHT_DIR;
DEDUP_BATCH_ID, when set, names the batch instead of the date (a night re-run later).
Writes ``batch-id`` and ``manifest`` (the local path) into DEDUP_NIGHT_DIR.
"""

import datetime as dt
import os
import sys
import zoneinfo
from pathlib import Path


def batch_id_now(zone_name: str) -> str:
    try:
        zone = zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        sys.exit(f"night-start: time zone {zone_name!r} is unknown to this image")
    return dt.datetime.now(zone).date().isoformat()


def fetch(uri: str, local: Path) -> None:
    from pyarrow import fs

    store, path = fs.FileSystem.from_uri(uri)
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        with store.open_input_stream(path) as source, open(local, "wb") as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)
    except (FileNotFoundError, OSError) as exc:
        sys.exit(f"night-start: the manifest {uri} cannot be read: {exc}")


def main() -> None:
    out = Path(os.environ["DEDUP_NIGHT_DIR"])
    root = os.environ["DEDUP_INTAKE_ROOT"].rstrip("/")
    name = os.environ.get("DEDUP_MANIFEST_NAME", "manifest.csv")
    batch = os.environ.get("DEDUP_BATCH_ID") or batch_id_now(os.environ["DEDUP_NIGHT_TIME_ZONE"])
    manifest = f"{root}/{batch}/{name}"
    if "://" in root:
        local = out / "intake" / batch / name
        fetch(manifest, local)
    else:
        local = Path(manifest)
        if not local.is_file():
            sys.exit(f"night-start: no manifest at {manifest} for batch {batch}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch-id").write_text(batch, encoding="utf-8")
    (out / "manifest").write_text(str(local), encoding="utf-8")
    print(f"night-start: batch {batch}, manifest {manifest}")


if __name__ == "__main__":
    main()
