"""Gallery search at scale: IVF-PQ (sharded, exact re-scoring) against exact search.

On calibrated synthetic templates (``dedup.evaluation.synthetic``: 128-d, planted duplicates),
side by side in one run:

- the review threshold: calibrated to a target FPIR (1% by default) at the gallery's size on
  the impostor tail fitted from the gallery (``dedup.matching.thresholds``);
- exact search: ``faiss.IndexFlatIP`` over the same float32 vectors, all probes at once; its
  candidates at the review threshold are the truth the approximate search is measured against
  (candidate recall), and recall on the planted duplicates alone is shown beside it;
- IVF-PQ frontier: recall at the review threshold and probes per second for a sweep of
  nprobe, tabled and plotted (PNG), with the best operating point at >= 99.5% recall. Three
  recalls: of the planted duplicates (the true matches: what a miss costs the registry), of
  every exact candidate in the genuine band (at and above ``--genuine-floor``, where the
  build's recall target applies), and of every exact candidate at the review threshold (true
  matches and the impostors above it);
- the recipe the build chose by measurement (``dedup.gallery.recipe_choice``, the trials
  printed) and the operating point it measured on the gallery's own templates, which the
  planner uses, against the frontier measured here;
- memory: bytes per template in the IVF-PQ shards' inverted lists (codes, their fast-scan
  block padding, ids), counted list by list on the loaded shards;
- exact sweep: the engine's arithmetic rate as a share of a plain numpy matrix product of the
  same shape on the same cores;
- build time of the gallery (training, encoding, publishing).

    .venv/bin/python benchmarks/gallery.py              # N = 1 M
    .venv/bin/python benchmarks/gallery.py --large      # N = 10 M
    .venv/bin/python benchmarks/gallery.py --device cuda --exact-only --n 50000000  # GPU sweep
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np
import pyarrow.parquet as pq

from dedup.contracts.schemas import CandidateSource
from dedup.contracts.vectors import read_templates
from dedup.evaluation.synthetic import write_synthetic_set
from dedup.gallery.engines import ExactSweepEngine, IvfPqEngine, Searchable
from dedup.gallery.reader import Gallery, open_gallery
from dedup.gallery.recipe_choice import RecallTarget, RecipeChoice, TrialIndex
from dedup.gallery.recipes import index_bytes_per_template
from dedup.gallery.writer import build_gallery
from dedup.matching.threshold_policy import gallery_tail
from dedup.matching.thresholds import expected_false_candidates, review_threshold_for
from dedup.settings import SearchSettings


class Point(NamedTuple):
    nprobe: int
    planted: float
    band: float
    all: float
    rate: float


NPROBES = (32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144)


def candidate_pairs(scores: np.ndarray, ids: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    rows, cols = np.nonzero(scores >= threshold)
    return set(zip(rows.tolist(), ids[rows, cols].tolist(), strict=True))


def planted_pairs(work: Path, probe_ids: list[str], gallery: Gallery) -> set[tuple[int, int]]:
    """(probe row, gallery id) of every planted gallery duplicate."""
    truth = pq.read_table(work / "synth" / "truth.parquet").to_pylist()
    row = {p: i for i, p in enumerate(probe_ids)}
    pairs = [
        (t["probe_id"], t["match_id"]) for t in truth if t["source"] == CandidateSource.GALLERY
    ]
    ids = gallery.gallery_ids([m for _, m in pairs])
    return {(row[p], int(g)) for (p, _), g in zip(pairs, ids, strict=True)}


def matmul_gflops(probes: np.ndarray, gallery: np.ndarray, tile: int) -> float:
    """numpy's own rate for the same products, tile by tile (BLAS sgemm)."""
    started = time.perf_counter()
    for start in range(0, len(gallery), tile):
        probes @ gallery[start : start + tile].T
    seconds = time.perf_counter() - started
    return float(2.0 * len(probes) * len(gallery) * gallery.shape[1] / seconds / 1e9)


def sweep_rate(
    engine: ExactSweepEngine, gallery: Searchable, probes: np.ndarray, k: int
) -> tuple[float, float]:
    """Seconds of one sweep of every probe over the gallery, and its rate in GFLOP/s."""
    started = time.perf_counter()
    engine.search(gallery, probes, k)
    seconds = time.perf_counter() - started
    flops = 2.0 * len(probes) * len(gallery.vectors) * probes.shape[1]
    return seconds, flops / seconds / 1e9


def exact_only(args: argparse.Namespace, vectors: np.ndarray, probes: np.ndarray) -> None:
    """The exact sweep engine on the chosen device against numpy's matmul on the CPU, and on a
    GPU its share of the dense fp16 tensor peak."""
    device = "gpu" if args.device == "cuda" else "cpu"
    engine = ExactSweepEngine(tile_rows=1 << 20 if device == "gpu" else 1 << 18, device=device)
    # the exact sweep reads only the vectors; the trial index's own index is never searched
    gallery = TrialIndex(faiss.IndexFlatIP(vectors.shape[1]), vectors)
    sweep_rate(engine, gallery, probes[:64], 10)  # warm: GPU context, first tiles
    seconds, rate = sweep_rate(engine, gallery, probes, 10)
    print(f"exact sweep engine on {args.device}: {seconds:.2f} s = {rate:.1f} GFLOP/s")
    if device == "gpu":
        share = rate / (args.peak_tflops * 1e3)
        print(f"  {share:.1%} of the {args.peak_tflops:g} TFLOP/s fp16 peak (target >= 50%)")
    sample = probes[: min(len(probes), 1000)]
    cpu = matmul_gflops(sample, vectors, 1 << 18)
    print(f"numpy matmul on the CPU ({len(sample)} probes): {cpu:.1f} GFLOP/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="N = 10 M instead of 1 M")
    parser.add_argument("--n", type=int)
    parser.add_argument("--probes", type=int, default=10_000)
    parser.add_argument("--duplicates", type=int, default=1_000)
    parser.add_argument("--shards", type=int, help="default: one per 100 M templates")
    parser.add_argument("--plot", type=Path, default=Path("docs/gallery-frontier.png"))
    parser.add_argument(
        "--workdir", type=Path, help="keep the set and the gallery here; a later run reuses them"
    )
    parser.add_argument("--target-fpir", type=float, default=0.01)
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="where the exact sweep runs"
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=989.0,
        help="the GPU's dense fp16 tensor peak (H100/H200 SXM: 989), for the sweep's share",
    )
    parser.add_argument(
        "--exact-only",
        action="store_true",
        help="time only the exact sweep engine against numpy (no gallery build, no IVF)",
    )
    parser.add_argument(
        "--genuine-floor", type=float, default=0.93, help="the genuine band's floor (dlib's)"
    )
    parser.add_argument(
        "--shortlist", type=int, default=SearchSettings().shortlist, help="per shard, re-scored"
    )
    args = parser.parse_args()
    n = args.n or (10_000_000 if args.large else 1_000_000)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-gallery-"))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} threads"
    )

    started = time.perf_counter()
    if not (work / "synth" / "probes.parquet").exists():  # a kept --workdir's set is reused
        write_synthetic_set(work / "synth", n, 128, args.duplicates, args.probes, seed=0)
    print(
        f"synthetic set: N = {n}, {args.probes} probes, {args.duplicates} planted "
        f"({time.perf_counter() - started:.1f} s)"
    )
    ids, vectors = read_templates(work / "synth" / "gallery.parquet")
    probe_ids, probes = read_templates(work / "synth" / "probes.parquet")
    if args.exact_only:
        exact_only(args, vectors, probes)
        return

    started = time.perf_counter()
    choices: list[RecipeChoice] = []
    goal = RecallTarget(floor_score=args.genuine_floor, shortlist=args.shortlist)
    if (work / "gallery" / "CURRENT").exists():  # built by an earlier run in this --workdir
        manifest = open_gallery(work / "gallery", verify=True).manifest
        choices.append(RecipeChoice(manifest.factory, "built by an earlier run (reused)"))
    else:
        manifest = build_gallery(
            work / "gallery",
            ids,
            vectors,
            model_id="synthetic",
            batch_id="bench",
            shards=args.shards,
            vector_dtype="float32",
            goal=goal,
            choices=choices,
        )
    build_seconds = time.perf_counter() - started
    gallery = open_gallery(work / "gallery", verify=False)
    shard_bytes = sum(
        gallery.storage.size(segment.key(name))
        for segment in manifest.segments
        for name in segment.files
        if name.startswith("shard-")
    )
    nominal = index_bytes_per_template(manifest.factory, vectors.shape[1])
    print(f"build: {manifest.factory}, {len(manifest.shards)} shards, {build_seconds:.1f} s")
    for line in choices[0].lines():
        print(f"  {line}")
    assert manifest.recall is not None, "a build with a goal measures its recall"
    measured = manifest.recall.operating_point(goal.floor_score, goal.target)
    print(
        f"  measured at build on {manifest.recall.queries} of its own templates: operating "
        f"point nprobe {measured.nprobe if measured else 'none (the exact sweep)'} for "
        f"{goal.target:.1%} at >= {goal.floor_score}"
    )
    print(
        f"memory: {gallery.index_bytes() / n:.1f} bytes per template in the inverted lists "
        f"(code + id + block padding, counted; {nominal} without padding; target <= 48); "
        f"shard files {shard_bytes / n:.1f} bytes per template, the rest being each shard's "
        "copy of the shared quantizer and PQ tables\n"
    )

    tail = gallery_tail(gallery)
    assert tail is not None
    threshold = review_threshold_for(args.target_fpir, n, tail)
    expected = expected_false_candidates(threshold, len(probes), n, tail, within_batch=False)
    print(
        f"review threshold for FPIR {args.target_fpir} at N = {n}: {threshold:.4f} "
        f"(predicted false candidates against the gallery: {expected:.0f})"
    )
    planted = planted_pairs(work, probe_ids, gallery)

    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    k = 10
    started = time.perf_counter()
    exact_scores, exact_ids = flat.search(probes, k)
    exact_seconds = time.perf_counter() - started
    truth = candidate_pairs(exact_scores, exact_ids, threshold)
    band_truth = candidate_pairs(exact_scores, exact_ids, args.genuine_floor)
    planted_found = planted & truth
    exact_rate = len(probes) / exact_seconds
    print(
        f"exact (IndexFlatIP): {exact_seconds:.2f} s, {exact_rate:.0f} probes/s, "
        f"{len(truth)} candidates at >= {threshold:.4f}, of them {len(planted_found)} of the "
        f"{len(planted)} planted duplicates ({len(truth) - len(planted_found)} others)"
    )
    del flat

    sweep = ExactSweepEngine(tile_rows=1 << 18, device="gpu" if args.device == "cuda" else "cpu")
    sweep_seconds, sweep_gflops = sweep_rate(sweep, gallery, probes, k)
    numpy_rate = matmul_gflops(probes, vectors, 1 << 18)
    print(
        f"exact sweep engine: {sweep_seconds:.2f} s = {sweep_gflops:.1f} GFLOP/s; numpy matmul "
        f"of the same shape {numpy_rate:.1f} GFLOP/s; ratio {sweep_gflops / numpy_rate:.2f} "
        "(target >= 0.70)\n"
    )

    print(
        f"planted: recall of the planted duplicates; band: of every exact candidate at >= "
        f"{args.genuine_floor} ({len(band_truth)} pairs); all: of every exact candidate"
    )
    print(f"{'nprobe':>7}{'planted':>9}{'band':>9}{'all':>9}{'probes/s':>10}{'vs exact':>10}")
    frontier = []
    for nprobe in [p for p in NPROBES if p <= manifest.nlist]:
        engine = IvfPqEngine(nprobe=nprobe, shortlist=args.shortlist)
        started = time.perf_counter()
        scores, found = engine.search(gallery, probes, k)
        seconds = time.perf_counter() - started
        got = candidate_pairs(scores, found, threshold)
        recall = len(truth & got) / len(truth) if truth else 1.0
        planted_recall = len(planted_found & got) / max(1, len(planted_found))
        band_got = candidate_pairs(scores, found, args.genuine_floor)
        band = len(band_truth & band_got) / len(band_truth) if band_truth else 1.0
        rate = len(probes) / seconds
        frontier.append(Point(nprobe, planted_recall, band, recall, rate))
        print(
            f"{nprobe:>7}{planted_recall:>9.4f}{band:>9.4f}{recall:>9.4f}{rate:>10.0f}"
            f"{rate / exact_rate:>9.2f}x"
        )
    if measured is not None:
        at = [f for f in frontier if f.nprobe == measured.nprobe]
        if at:
            print(
                f"the build's operating point, nprobe {measured.nprobe}: planted "
                f"{at[0].planted:.4f}, band {at[0].band:.4f}, "
                f"{at[0].rate / exact_rate:.2f}x exact search"
            )
    for label, field in (
        ("planted duplicates", "planted"),
        ("the genuine band", "band"),
        ("all candidates", "all"),
    ):
        eligible = [f for f in frontier if getattr(f, field) >= 0.995]
        if not eligible:
            print(f"operating point on {label}: no nprobe in the sweep reached 99.5% recall")
            continue
        best = max(eligible, key=lambda f: f.rate)
        print(
            f"operating point on {label}: nprobe {best.nprobe}, planted {best.planted:.4f}, "
            f"band {best.band:.4f}, all {best.all:.4f}, {best.rate / exact_rate:.2f}x exact search"
        )
    plot(frontier, exact_rate, n, threshold, args.plot)


def plot(frontier: list[Point], exact_rate: float, n: int, threshold: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axis = plt.subplots(figsize=(6, 4))
    speed = [f.rate / exact_rate for f in frontier]
    axis.plot(speed, [f.planted for f in frontier], marker="o", label="planted duplicates")
    axis.plot(speed, [f.all for f in frontier], marker="s", label="all exact candidates")
    for point, x in zip(frontier, speed, strict=True):
        axis.annotate(
            str(point.nprobe),
            (x, point.planted),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=8,
        )
    axis.axhline(0.995, linestyle="--", color="grey", linewidth=0.8)
    axis.set_xscale("log")
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
    axis.set_xlabel("speed-up over exact search (IndexFlatIP)")
    axis.set_ylabel(f"recall at cosine {threshold:.4f}")
    axis.set_title(f"IVF-PQ frontier over nprobe, N = {n:,}")
    axis.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
