"""Recall earned on the data: build and search galleries of three differently distributed sets.

For each kind of synthetic set (``dedup gallery synth --kind``):

- ``calibrated``: the generator fitted to dlib's model on real faces;
- ``clustered``: heavier-tailed capture noise and groups of four look-alikes;
- ``arcface512``: 512-d, a weak shared population direction,

side by side in one run:

1. ``build_gallery`` with a recall goal: the candidate recipes are tried on the templates and
   the fastest that reaches the target recall in the genuine band is kept (printed with what
   was tried); its recall by band is measured at full size and recorded in the manifest;
2. the probes are searched with the engine the planner picks (``search_gallery``, as
   ``dedup gallery search`` does), and with the chosen IVF recipe forced at the gallery's
   operating point;
3. both are compared with the exact search's candidate pairs (top k per probe, at and above
   the threshold): the share of them returned, and the speed-up of the IVF search.

The threshold of each set is its genuine band's floor: the 1% quantile of its planted
duplicates' scores, used as ``--genuine-floor`` too.

    .venv/bin/python benchmarks/gallery_recall.py            # 200 k templates a set
    .venv/bin/python benchmarks/gallery_recall.py --n 50000  # quicker
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dedup.contracts.schemas import CandidateSource
from dedup.contracts.vectors import read_templates
from dedup.evaluation.synthetic import KINDS, write_synthetic_set
from dedup.gallery.engines import ExactSweepEngine
from dedup.gallery.reader import open_gallery
from dedup.gallery.recipe_choice import RecallTarget, RecipeChoice
from dedup.gallery.writer import build_gallery
from dedup.matching.batch_search import search_gallery
from dedup.settings import ModelSpec, Settings

K = 10


def genuine_floor(folder: Path) -> float:
    gallery_ids, gallery = read_templates(folder / "gallery.parquet")
    probe_ids, probes = read_templates(folder / "probes.parquet")
    g_at = {e: i for i, e in enumerate(gallery_ids)}
    p_at = {e: i for i, e in enumerate(probe_ids)}
    truth = pq.read_table(folder / "truth.parquet").to_pylist()
    scores = [
        float(probes[p_at[t["probe_id"]]] @ gallery[g_at[t["match_id"]]])
        for t in truth
        if t["source"] == CandidateSource.GALLERY
    ]
    return float(np.quantile(scores, 0.01))


def pairs(table: object, floor: float) -> set[tuple[str, str]]:
    rows = table.to_pylist()  # type: ignore[attr-defined]
    return {
        (r["probe_id"], r["candidate_id"])
        for r in rows
        if r["source"] == CandidateSource.GALLERY and r["score"] >= floor
    }


def run(kind: str, n: int, probes: int, work: Path) -> list[str]:
    model, dim = KINDS[kind]
    folder = work / kind
    write_synthetic_set(folder, n, dim, probes // 4, probes, seed=7, model=model)
    floor = genuine_floor(folder)
    model_id = f"synthetic-{kind}"
    base = Settings()
    spec = ModelSpec(alignment="none", dimension=dim, genuine_floor=floor)
    settings = base.model_copy(update={"models": {**base.models, model_id: spec}})
    goal = RecallTarget(floor, settings.search.target_recall, settings.search.shortlist, K)
    ids, vectors = read_templates(folder / "gallery.parquet")
    choices: list[RecipeChoice] = []
    started = time.perf_counter()
    build_gallery(
        folder / "gallery", ids, vectors, model_id=model_id, batch_id="b", goal=goal,
        choices=choices,
    )  # fmt: skip
    build_seconds = time.perf_counter() - started
    gallery = open_gallery(folder / "gallery")
    probe_ids, probe_vectors = read_templates(folder / "probes.parquet")
    lines = [f"== {kind}: {n} templates of {dim}-d, {probes} probes, threshold {floor:.4f}"]
    lines += [*choices[0].lines(), f"build (trials included): {build_seconds:.1f} s"]
    started = time.perf_counter()
    exact_scores, exact_ids = ExactSweepEngine().search(gallery, probe_vectors, K)
    exact_seconds = time.perf_counter() - started
    rows, cols = np.nonzero(exact_scores >= floor)
    wanted = {
        (probe_ids[r], gallery.enrollment_id(int(exact_ids[r, c])))
        for r, c in zip(rows, cols, strict=True)
    }
    for label, engine in (("planner's choice", "auto"), ("IVF forced", "ivfpq")):
        forced = settings.model_copy(
            update={"search": settings.search.model_copy(update={"engine": engine, "k": K})}
        )
        started = time.perf_counter()
        found, report = search_gallery(
            gallery, probe_ids, probe_vectors, forced, threshold=floor, model_id=model_id
        )
        seconds = time.perf_counter() - started
        got = pairs(found, floor)
        recall = len(got & wanted) / len(wanted) if wanted else 1.0
        lines.append(
            f"{label}: engine {report.engine}"
            + (f" at nprobe {report.nprobe}" if report.nprobe else "")
            + f", {len(got & wanted)}/{len(wanted)} exact candidate pairs = {recall:.4f}, "
            f"{seconds:.2f} s (exact search {exact_seconds:.2f} s: "
            f"{exact_seconds / seconds:.1f}x)"
            + (f", fell back: {report.fallback}" if report.fallback else "")
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--probes", type=int, default=2000)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as work:
        for kind in args.kinds.split(","):
            for line in run(kind, args.n, args.probes, Path(work)):
                print(line, flush=True)


if __name__ == "__main__":
    main()
