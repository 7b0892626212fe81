"""The nightly add: a batch of 10 k templates added to galleries of two sizes, side by side.

Segmented storage (``dedup.gallery.segments``) makes an add write one segment of the batch's
size and a few small files, whatever the gallery holds. For each size this builds a gallery
(one segment), then times ``add_batch`` of the same batch and counts the bytes it wrote
(files under the root that were not there before), then times opening the gallery with its
two segments (the shards' segment files merged into one index each) against opening it once
``compact(full=True)`` has merged them, and a full compaction itself.

An add re-measures its index's recall only once the gallery has grown 10% since it was last
measured (``version_recall.needs_remeasuring``); a 10 k batch is 1% of 1 M, so the add timed
here does not, and the re-measurement (``version_recall.measure_mates``) is timed beside it.

Both galleries use one recipe (``--factory``), so the ratio shows what grows with N in the
storage layer; a recipe with more lists also costs more per template to encode (assignment to
``nlist`` centroids), whatever the storage.

    .venv/bin/python benchmarks/gallery_add.py                         # 1 M against 4 M
    .venv/bin/python benchmarks/gallery_add.py --sizes 1000000 10000000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np

from dedup.gallery.erasure import compact
from dedup.gallery.layout import GalleryManifest
from dedup.gallery.reader import open_gallery
from dedup.gallery.recipe_choice import RecallTarget
from dedup.gallery.version_recall import measure_mates
from dedup.gallery.writer import add_batch, build_gallery

CHUNK = 1_000_000
# What the match job passes: the add re-measures planted mates around the operating point.
GOAL = RecallTarget(floor_score=0.93)


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, n, CHUNK):
        block = rng.standard_normal((min(CHUNK, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def tree_bytes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def timed(action: object) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()  # type: ignore[operator]
    return time.perf_counter() - started, result


def time_remeasuring(root: Path, manifest: GalleryManifest, added: int) -> float:
    assert manifest.recall is not None, "the build measured with a goal"
    new_ids = np.arange(manifest.next_id - added, manifest.next_id, dtype=np.int64)
    gallery = open_gallery(root, verify=False)
    started = time.perf_counter()
    measure_mates(gallery, manifest, manifest.recall, GOAL, new_ids)
    return time.perf_counter() - started


def build(n: int, args: argparse.Namespace, work: Path) -> tuple[Path, float | None]:
    """The gallery of ``n`` (one segment), or the one a kept ``--work`` folder holds already."""
    root = work / f"gallery-{n}"
    if (root / "CURRENT").exists():
        manifest = open_gallery(root, verify=False).manifest
        if manifest.version == 1 and manifest.factory == args.factory:
            return root, None
        raise SystemExit(f"{root} holds a used gallery: give another --work folder")
    data = unit_vectors(n, args.dim, seed=n)
    names = [f"e{i:010d}" for i in range(n)]
    started = time.perf_counter()
    build_gallery(
        root, names, data, model_id="bench", batch_id="night-0", factory=args.factory, goal=GOAL
    )
    return root, time.perf_counter() - started


def add_rounds(roots: list[Path], batch: np.ndarray, rounds: int) -> list[dict[str, float]]:
    """Add a batch to each gallery in turn, ``rounds`` times (fresh ids each round): the
    fastest of its rounds is each size's add time, so a moment of load on shared cores
    lands on one round of one size, not on the ratio."""
    found: list[dict[str, float]] = [{"add_s": float("inf")} for _ in roots]
    for number in range(1, rounds + 1):
        names = [f"n{number}-{i:08d}" for i in range(len(batch))]
        for root, row in zip(roots, found, strict=True):
            before = tree_bytes(root)
            started = time.perf_counter()
            added = add_batch(root, f"night-{number}", names, batch, model_id="bench", goal=GOAL)
            seconds = time.perf_counter() - started
            row["add_s"] = min(row["add_s"], seconds)
            after = tree_bytes(root)
            row["written_mb"] = sum(v for k, v in after.items() if k not in before) / 1e6
            row["gallery_mb"] = sum(after.values()) / 1e6
            row["last"] = added  # type: ignore[assignment]
    return found


def after_adds(root: Path, row: dict[str, Any], added: int) -> None:
    # What an add does on top once the gallery has outgrown its measurement (10% growth).
    row["remeasure_s"] = time_remeasuring(root, cast(GalleryManifest, row.pop("last")), added)
    row["open_segmented_s"], _ = timed(lambda: open_gallery(root, verify=False))
    row["compact_s"], _ = timed(lambda: compact(root, full=True))
    row["open_compacted_s"], _ = timed(lambda: open_gallery(root, verify=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1_000_000, 4_000_000])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--factory", default="IVF4096,PQ64x4fs")
    parser.add_argument(
        "--work", type=Path, default=None, help="keep the galleries here (and reuse built ones)"
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"faiss {faiss.__version__}; batch {args.batch:,}, {args.dim}-d, {args.factory}, "
        f"fastest of {args.rounds} rounds"
    )
    batch = unit_vectors(args.batch, args.dim, seed=7)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        built = [build(n, args, work) for n in args.sizes]
        rows = add_rounds([root for root, _ in built], batch, args.rounds)
        for (root, build_s), row, n in zip(built, rows, args.sizes, strict=True):
            row |= {"n": n, "build_s": build_s if build_s is not None else float("nan")}
            after_adds(root, row, len(batch))
    print(f"{'N':>12} {'build s':>8} {'add s':>7} {'re-measure s':>13} {'written MB':>11} "
          f"{'gallery MB':>11} {'open segmented s':>17} {'open 1 seg s':>13} "
          f"{'compact s':>10}")  # fmt: skip
    for r in rows:
        print(
            f"{r['n']:>12,} {r['build_s']:>8.1f} {r['add_s']:>7.2f} {r['remeasure_s']:>13.2f} "
            f"{r['written_mb']:>11.2f} {r['gallery_mb']:>11.0f} {r['open_segmented_s']:>17.2f} "
            f"{r['open_compacted_s']:>13.2f} {r['compact_s']:>10.1f}"
        )
    small, large = rows
    print(
        f"add time ratio {large['n'] / small['n']:.0f}x N: {large['add_s'] / small['add_s']:.2f} "
        f"(target <= 1.5); bytes written ratio {large['written_mb'] / small['written_mb']:.2f}; "
        f"re-measurement ratio {large['remeasure_s'] / small['remeasure_s']:.2f} (once per 10% "
        "of growth, so per template added it does not grow with N)"
    )


if __name__ == "__main__":
    main()
