"""Stage-job throughput: Spark local[1] against local[2] and against a plain Python loop.

All three stage the same photos (the demo portraits and their re-captures, no hostile rows)
with the same code (``dedup.intake.photo_to_face``). Each Spark master runs in its own process
(a JVM has one master); each first stages a small warm-up batch, so JVM start and dlib's weight
loading are not counted, and the Python loop likewise loads the weights before its clock
starts. The Spark figures are whole-job wall time: manifest, validation, photos, Delta MERGEs.

    .venv/bin/python benchmarks/stage.py --photos 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dedup.demo.batch import build_demo_batch
from dedup.demo.portraits import fetch_portraits
from dedup.imaging.detect import face_analyser
from dedup.intake.manifest_reader import read_manifest
from dedup.intake.manifest_rules import resolve_photo
from dedup.intake.photo_files import read_photo
from dedup.intake.photo_to_face import stage_photo
from dedup.settings import load_settings
from pipelines.lake.batch_run import BatchRun


def build_batches(root: Path, photos: int) -> tuple[Path, Path, int]:
    portraits = fetch_portraits()
    # 4 usable portraits, each with `recaptures` copies, plus 5 conversion rows.
    recaptures = max(0, -(-(photos - 5) // 4) - 1)
    main = build_demo_batch(root / "main", portraits, recaptures=recaptures, hostile=False)
    warmup = build_demo_batch(root / "warmup", portraits, recaptures=0, seed=1, hostile=False)
    return main.manifest, warmup.manifest, len(main.expected)


def python_loop(manifest: Path) -> dict[str, float]:
    settings = load_settings()
    face_analyser()  # weights loaded before the clock, as Spark's warm-up batch does
    rows = read_manifest(manifest).to_pylist()
    started = time.perf_counter()
    for row in rows:
        location = resolve_photo(row["photo_path"], manifest.parent, settings.manifest)
        stage_photo(read_photo(location, settings.imaging), settings)
    return {"seconds": time.perf_counter() - started, "photos": len(rows)}


def spark_run(master: str, manifest: Path, warmup: Path, lake: Path) -> dict[str, float]:
    """Run in a child process: one Spark master per JVM."""
    from pipelines.spark.session import spark_session
    from pipelines.spark.stage import run_stage

    settings = load_settings(overrides={"lake": str(lake), "spark": {"master": master}})
    spark = spark_session(settings, app_name=f"bench-stage-{master}")
    run_stage(BatchRun("warmup", settings), warmup, spark)
    started = time.perf_counter()
    report = run_stage(BatchRun("bench", settings), manifest, spark)
    seconds = time.perf_counter() - started
    # The same job over a batch whose every row is refused before its photo is read: what
    # a job costs whatever its size (Spark stages, Delta MERGEs, the report).
    no_photos = lake / "no-photos.csv"
    no_photos.write_text(
        manifest.read_text(encoding="utf-8").replace(",true,", ",false,"), encoding="utf-8"
    )
    started = time.perf_counter()
    run_stage(BatchRun("fixed-cost", settings), no_photos, spark)
    fixed = time.perf_counter() - started
    spark.stop()
    return {"seconds": seconds, "photos": report.photos_processed, "fixed": fixed}


def in_child(master: str, manifest: Path, warmup: Path, lake: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", master, "--manifest", str(manifest)]
    command += ["--warmup", str(warmup), "--lake", str(lake)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {master} run failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--child")
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--warmup", type=Path)
    parser.add_argument("--lake", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(spark_run(args.child, args.manifest, args.warmup, args.lake)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-stage-") as tmp:
        root = Path(tmp)
        manifest, warmup, rows = build_batches(root, args.photos)
        results = {"python loop": python_loop(manifest)}
        for master in ("local[1]", "local[2]"):
            lake = root / f"lake-{master[6:-1]}"  # no [] in the path: Hadoop reads it as a glob
            results[f"spark {master}"] = in_child(master, manifest, warmup, lake)

    base = results["python loop"]["photos"] / results["python loop"]["seconds"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{rows} photos, each engine on the same files\n")
    header = f"{'engine':<16}{'photos':>7}{'seconds':>9}{'photos/s':>10}{'vs loop':>9}"
    print(header + f"{'fixed s':>9}{'net photos/s':>14}{'net vs loop':>13}")
    rates, net = {}, {}
    for name, r in results.items():
        rates[name] = r["photos"] / r["seconds"]
        fixed = r.get("fixed", 0.0)
        net[name] = r["photos"] / (r["seconds"] - fixed)
        print(
            f"{name:<16}{int(r['photos']):>7}{r['seconds']:>9.2f}{rates[name]:>10.2f}"
            f"{rates[name] / base:>8.2f}x{fixed:>9.2f}{net[name]:>14.2f}{net[name] / base:>12.2f}x"
        )
    print(
        f"\nlocal[2] / local[1] = {rates['spark local[2]'] / rates['spark local[1]']:.2f}x "
        f"whole job, {net['spark local[2]'] / net['spark local[1]']:.2f}x net of the fixed cost"
    )


if __name__ == "__main__":
    main()
