"""One whole night through ``dedup nightly``: wall time per step, and how much of it is spent
outside the engines' work.

The batch is the demo portraits' augmented re-captures (``--photos`` rows, no hostile rows),
searched against a gallery seeded with ``--gallery-size`` synthetic templates. Each step runs
as the night runs it, as its own ``dedup <step>`` process; for each the table gives the
process's wall time (measured by the night) against the job's own time (measured inside the
job, ``figures.seconds``): the difference is the step's fixed cost, its interpreter and
imports, its engine starting (Spark's JVM, a Ray runtime), and its completion record.

    .venv/bin/python benchmarks/nightly.py --photos 2000 --gallery-size 100000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from dedup.demo.batch import build_demo_batch
from dedup.demo.portraits import fetch_portraits
from dedup.settings import load_settings
from pipelines.lake.batch_run import BatchRun
from pipelines.nightly import Night, StepResult, run_night


class Collect:
    def __init__(self) -> None:
        self.results: list[StepResult] = []

    @contextlib.contextmanager
    def running(self, step: str, batch_id: str) -> Iterator[None]:
        print(f"  {step} ...", flush=True)
        yield

    def finished(self, result: StepResult) -> None:
        self.results.append(result)


def seed_gallery(root: Path, size: int) -> Path:
    gallery = root / "gallery"
    synthetic = root / "synthetic"
    for args in (
        ["gallery", "synth", "--n", str(size), "--duplicates", "0", "--probes", "1",
         "--out", str(synthetic)],
        ["gallery", "build", "--templates", str(synthetic / "gallery.parquet"),
         "--out", str(gallery)],
    ):  # fmt: skip
        subprocess.run([sys.executable, "-m", "pipelines.cli", *args], check=True)
    return gallery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--gallery-size", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dedup-bench-nightly"))
    args = parser.parse_args()
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True)
    recaptures = max(0, -(-(args.photos - 5) // 4) - 1)
    batch = build_demo_batch(
        args.workdir / "batch", fetch_portraits(), recaptures=recaptures, hostile=False
    )
    print(f"batch: {len(batch.expected)} rows; gallery: {args.gallery_size} synthetic templates")
    gallery = seed_gallery(args.workdir, args.gallery_size)
    settings = load_settings(overrides={"lake": str(args.workdir / "lake"),
                                        "gallery": str(gallery)})  # fmt: skip
    watcher = Collect()
    started = time.perf_counter()
    run_night(BatchRun("bench-1", settings), Night(batch.manifest, gallery, ray=True), watcher)
    total = time.perf_counter() - started
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")  # fmt: skip
    print(f"rows: {len(batch.expected)}; night wall time {total:.1f} s\n")
    print(f"{'step':8} {'wall s':>8} {'job s':>8} {'fixed s':>8} {'fixed %':>8} "
          f"{'rows out':>9}")  # fmt: skip
    fixed_total = 0.0
    for result in watcher.results:
        job = float(result.figures.get("seconds") or 0.0)
        fixed = max(0.0, result.seconds - job)
        fixed_total += fixed
        rows = result.figures.get("rows_out", "")
        share = 100 * fixed / result.seconds if result.seconds else 0.0
        print(f"{result.step:8} {result.seconds:8.1f} {job:8.1f} {fixed:8.1f} "
              f"{share:7.0f}% {rows!s:>9}")  # fmt: skip
    print(f"\noutside the engines' work: {fixed_total:.1f} s of {total:.1f} s "
          f"({100 * fixed_total / total:.0f}%)")  # fmt: skip


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # as the dedup script ends: delta-rs may abort at interpreter teardown
