"""The nightly add: a batch of 10 k templates added to galleries of two sizes, side by side.

Segmented storage (``dedup.gallery.segments``) makes an add write one segment of the batch's
size and a few small files, whatever the gallery holds. For each size this builds a gallery
(one segment), then times ``add_batch`` of the same batch and counts the bytes it wrote
(files under the root that were not there before), then times opening the gallery with its
two segments (the shards' segment files merged into one index each) against opening it once
``compact(full=True)`` has merged them, and a full compaction itself.

An add re-measures its index's recall only once the gallery has grown 10% since it was last
measured (``writer.needs_remeasuring``); a 10 k batch is 1% of 1 M, so the add timed here does
not, and the re-measurement (``writer.measure_mates``) is timed on its own beside it.

Both galleries use one recipe (``--factory``), so the ratio shows what grows with N in the
storage layer; a recipe with more lists also costs more per template to encode (assignment to
``nlist`` centroids), whatever the storage.

    .venv/bin/python benchmarks/gallery_add.py                         # 1 M against 4 M
    .venv/bin/python benchmarks/gallery_add.py --sizes 1000000 10000000
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import cast

import faiss
import numpy as np

from dedup.gallery.erasure import compact
from dedup.gallery.layout import GalleryManifest
from dedup.gallery.reader import open_gallery
from dedup.gallery.recipe_choice import RecallTarget
from dedup.gallery.writer import add_batch, build_gallery, measure_mates

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


def measure(n: int, batch: np.ndarray, args: argparse.Namespace, work: Path) -> dict[str, float]:
    root = work / f"gallery-{n}"
    data = unit_vectors(n, args.dim, seed=n)
    names = [f"e{i:010d}" for i in range(n)]
    started = time.perf_counter()
    build_gallery(
        root, names, data, model_id="bench", batch_id="night-0", factory=args.factory, goal=GOAL
    )
    build_s = time.perf_counter() - started
    del data, names
    before = tree_bytes(root)
    new_names = [f"n{i:08d}" for i in range(len(batch))]
    add_s, added = timed(
        lambda: add_batch(root, "night-1", new_names, batch, model_id="bench", goal=GOAL)
    )
    after = tree_bytes(root)
    # What an add does on top once the gallery has outgrown its measurement (10% growth).
    remeasure_s = time_remeasuring(root, cast(GalleryManifest, added), len(batch))
    written = sum(size for path, size in after.items() if path not in before)
    open_segmented_s, _ = timed(lambda: open_gallery(root, verify=False))
    compact_s, _ = timed(lambda: compact(root, full=True))
    open_compacted_s, _ = timed(lambda: open_gallery(root, verify=False))
    return {
        "n": n,
        "build_s": build_s,
        "add_s": add_s,
        "remeasure_s": remeasure_s,
        "written_mb": written / 1e6,
        "gallery_mb": sum(after.values()) / 1e6,
        "open_segmented_s": open_segmented_s,
        "open_compacted_s": open_compacted_s,
        "compact_s": compact_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1_000_000, 4_000_000])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--factory", default="IVF4096,PQ64x4fs")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"faiss {faiss.__version__}; batch {args.batch:,}, {args.dim}-d, {args.factory}"
    )
    batch = unit_vectors(args.batch, args.dim, seed=7)
    with tempfile.TemporaryDirectory(dir=args.work) as folder:
        rows = [measure(n, batch, args, Path(folder)) for n in args.sizes]
    print(f"{'N':>12} {'build s':>8} {'add s':>7} {'re-measure s':>13} {'written MB':>11} "
          f"{'gallery MB':>11} {'open 2 seg s':>13} {'open 1 seg s':>13} "
          f"{'compact s':>10}")  # fmt: skip
    for r in rows:
        print(
            f"{r['n']:>12,} {r['build_s']:>8.1f} {r['add_s']:>7.2f} {r['remeasure_s']:>13.2f} "
            f"{r['written_mb']:>11.2f} "
            f"{r['gallery_mb']:>11.0f} {r['open_segmented_s']:>13.2f} "
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
