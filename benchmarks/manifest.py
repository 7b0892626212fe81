"""What reading every row safely costs: the manifest reader and the photo reader against the
plainest read of the same files.

- Manifests: ``read_manifest`` (every cell checked, bad rows kept as row errors, line numbers
  counted) against a bare parse that trusts its input (``csv.DictReader``, ``json.loads`` per
  line, ``pq.read_table().to_pylist()``) on the same well-formed file, per format. Both end
  with the rows as Python values; the reader also builds the Arrow table the job writes.
- Photos: ``read_photo`` (lstat, a non-blocking open without following links, fstat, the read
  on a helper thread with a deadline) against ``open(path, "rb").read()`` on the same files.

    .venv/bin/python benchmarks/manifest.py --rows 200000 --photos 2000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dedup.contracts.schemas import MANIFEST_COLUMNS
from dedup.intake.manifest_reader import read_manifest
from dedup.intake.photo_files import read_photo
from dedup.settings import ImagingSettings


def rows_of(count: int) -> list[dict[str, str]]:
    return [
        {
            "enrollment_id": f"ENR-{i:09d}",
            "photo_path": f"photos/{i % 1000:03d}/{i:09d}.jpg",
            "consent": "true",
            "captured_at": "2026-11-20T10:15:00+02:00",
            "center_id": f"CTR-{i % 300:03d}",
            "given_name": "Amina" if i % 2 else "Zoë",
            "family_name": "Okafor" if i % 3 else "Ñandú",
            "date_of_birth": "1990-12-10",
            "sex": "F",
        }
        for i in range(count)
    ]


def write_manifests(folder: Path, rows: list[dict[str, str]]) -> dict[str, Path]:
    paths = {fmt: folder / f"manifest.{fmt}" for fmt in ("csv", "jsonl", "parquet")}
    with paths["csv"].open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    paths["jsonl"].write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    columns = {name: pa.array([r[name] for r in rows], pa.string()) for name in MANIFEST_COLUMNS}
    pq.write_table(pa.table(columns), paths["parquet"])
    return paths


def bare_parse(fmt: str, path: Path) -> int:
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return sum(1 for _ in csv.DictReader(handle))
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as handle:
            return sum(1 for line in handle if json.loads(line))
    return len(pq.read_table(path).to_pylist())


def best_of(repeats: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--photo-bytes", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-manifest-") as tmp:
        root = Path(tmp)
        paths = write_manifests(root, rows_of(args.rows))
        print(f"\nmanifests of {args.rows} rows, best of {args.repeats}")
        print(
            f"{'format':<9}{'MB':>7}{'bare s':>9}{'reader s':>10}{'reader rows/s':>15}{'ratio':>8}"
        )
        for fmt, path in paths.items():
            assert read_manifest(path).num_rows == bare_parse(fmt, path) == args.rows
            bare = best_of(args.repeats, lambda: bare_parse(fmt, path))  # noqa: B023
            safe = best_of(args.repeats, lambda: read_manifest(path))  # noqa: B023
            megabytes = path.stat().st_size / 1e6
            print(
                f"{fmt:<9}{megabytes:>7.1f}{bare:>9.2f}{safe:>10.2f}{args.rows / safe:>15,.0f}"
                f"{safe / bare:>7.2f}x"
            )

        photos = root / "photos"
        photos.mkdir()
        payload = os.urandom(args.photo_bytes)
        files = [photos / f"{i:05d}.jpg" for i in range(args.photos)]
        for file in files:
            file.write_bytes(payload)
        limits = ImagingSettings()

        def plain() -> None:
            for file in files:
                with open(file, "rb") as handle:
                    handle.read()

        def guarded() -> None:
            for file in files:
                read_photo(str(file), limits)

        plain()  # warm the page cache for both
        bare = best_of(args.repeats, plain)
        safe = best_of(args.repeats, guarded)
        print(
            f"\n{args.photos} photos of {args.photo_bytes} bytes (page cache warm), best of "
            f"{args.repeats}"
        )
        print(f"{'read':<26}{'us/photo':>10}")
        print(f"{'open().read()':<26}{bare / args.photos * 1e6:>10.1f}")
        print(f"{'read_photo (guarded)':<26}{safe / args.photos * 1e6:>10.1f}")
        print(f"ratio {safe / bare:.2f}x, {1e6 * (safe - bare) / args.photos:.0f} us more a photo")


if __name__ == "__main__":
    main()
