"""A batch searched end to end: engine choice, search, recall audit, candidates, the report.

When the recall audit finds the approximate search below its floor in the genuine band, the
batch is searched again rather than failed: at the smallest higher ``nprobe`` that the gallery
measured to reach the target (audited again on the same probes), else with the exact sweep.
The report says so (``fallback``), and so does a metric an alert watches.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from dedup.atomic_files import write_atomically
from dedup.contracts.schemas import CandidateSource
from dedup.contracts.vectors import read_templates
from dedup.gallery.engines import (
    ExactSweepEngine,
    IvfPqEngine,
    Scores,
    SearchEngine,
    check_probes,
    gpu_count,
)
from dedup.gallery.reader import Gallery, open_gallery
from dedup.gallery.storage import GalleryRoot
from dedup.matching.candidates import assemble_candidates
from dedup.matching.cost_model import EngineChoice, choose_engine
from dedup.matching.genuine_band import GenuineBand, genuine_band
from dedup.matching.recall_audit import RecallAudit, audit_recall
from dedup.matching.threshold_policy import ReviewThreshold, review_threshold
from dedup.matching.thresholds import expected_false_candidates
from dedup.observability.job_metrics import SearchFigures
from dedup.settings import Settings


@dataclass(frozen=True)
class SearchReport:
    probes: int
    gallery_size: int
    engine: str
    reason: str
    review: ReviewThreshold
    expected_false: float | None
    candidates: int
    from_batch: int
    seconds: float
    audit: RecallAudit | None
    band: GenuineBand | None = None
    nprobe: int | None = None
    # How the batch was searched again after its audit fell below the floor ("nprobe 2048",
    # "exact"), and the audit that failed; None when it was not.
    fallback: str | None = None
    failed_audit: RecallAudit | None = None

    @property
    def threshold(self) -> float:
        """The review threshold the batch was searched at (``review`` says why)."""
        return self.review.value

    def figures(self) -> SearchFigures:
        audit = self.audit
        return SearchFigures(
            engine=self.engine,
            probes=self.probes,
            gallery_size=self.gallery_size,
            candidates=self.candidates,
            threshold=self.threshold,
            expected_false=self.expected_false,
            seconds=self.seconds,
            audit_sampled=None if audit is None else audit.probes_sampled,
            audit_exact_candidates=None if audit is None else audit.exact_candidates,
            audit_found=None if audit is None else audit.found,
            audit_floor=None if audit is None else audit.floor,
            audit_band_floor=None if audit is None else audit.band_floor,
            audit_band_pairs=None if audit is None else audit.band_pairs,
            audit_band_found=None if audit is None else audit.band_found,
            fallback=self.fallback,
        )

    def lines(self) -> list[str]:
        out = [
            f"{self.probes} probes against {self.gallery_size} templates: engine {self.engine} "
            f"({self.reason})",
            self.review.sentence(),
            f"{self.candidates} candidates at score >= {self.threshold:.4f} "
            f"({self.from_batch} within the batch) in {self.seconds:.2f} s",
        ]
        if self.expected_false is not None:
            out.append(
                f"predicted false candidates at this threshold: {self.expected_false:.1f} "
                "(impostor tail fitted on the gallery)"
            )
        if self.band is not None:
            out.append(self.band.sentence())
        if self.failed_audit is not None:
            out.append(f"{self.failed_audit.line()}: below the floor")
            out.append(f"the batch was searched again ({self.fallback})")
        if self.audit is not None:
            out.append(self.audit.line())
        return out


def engine_for(choice: EngineChoice, settings: Settings) -> SearchEngine:
    if choice.engine == "exact":
        return ExactSweepEngine(device=settings.search.device)
    return IvfPqEngine(nprobe=choice.nprobe, shortlist=settings.search.shortlist)


def search_probes(
    gallery_root: GalleryRoot,
    probes_path: Path,
    out: Path,
    settings: Settings,
    *,
    k: int | None = None,
    threshold: float | None = None,
    target_fpir: float | None = None,
    engine: str | None = None,
    model_id: str | None = None,
) -> SearchReport:
    """Search a template file, audit (approximate engine only; below the floor the batch is
    searched again), write the candidates atomically."""
    gallery: Gallery = open_gallery(gallery_root)
    probe_ids, probes = read_templates(probes_path)
    candidates, report = search_gallery(
        gallery,
        probe_ids,
        probes,
        settings,
        k=k,
        threshold=threshold,
        target_fpir=target_fpir,
        engine=engine,
        model_id=model_id,
    )
    write_atomically(out, lambda path: pq.write_table(candidates, path))
    return report


def search_gallery(
    gallery: Gallery,
    probe_ids: list[str],
    probes: NDArray[np.floating],
    settings: Settings,
    *,
    k: int | None = None,
    threshold: float | None = None,
    target_fpir: float | None = None,
    engine: str | None = None,
    model_id: str | None = None,
    approximate: SearchEngine | None = None,
    duplicate_scores: Sequence[float] = (),
) -> tuple[pa.Table, SearchReport]:
    """The ``candidates`` of a batch of probes, against the gallery and within the batch.

    The threshold comes from the one threshold policy (``review_threshold``), whose sentence
    the report's lines carry. The cost model picks the engine from the gallery's measured
    recall in the genuine band (``genuine_band``: from ``duplicate_scores``, the scores of
    adjudicated duplicates, or from settings); ``approximate`` replaces
    the in-process IVF engine (the Ray shard actors, for example) and must take an ``nprobe``
    attribute. An audit below its floor makes the batch be searched again (module docstring).
    """
    started = time.perf_counter()
    k = k or settings.search.k
    review = review_threshold(
        settings.matching, gallery, threshold=threshold, target_fpir=target_fpir
    )
    band = genuine_band(settings, gallery.model_id, review.value, duplicate_scores)
    tail = review.tail
    expected = (
        None
        if tail is None
        else expected_false_candidates(review.value, len(probes), gallery.size, tail)
    )
    search_settings = settings.search.model_copy(
        update={"engine": engine or settings.search.engine}
    )
    on_gpu = settings.search.device != "cpu" and gpu_count() > 0
    choice = choose_engine(
        len(probes),
        gallery.size,
        gallery.dimension,
        gallery.manifest.nlist,
        search_settings,
        gpu=on_gpu,
        recall=gallery.manifest.recall,
        band_floor=band.floor,
    )
    matrix = check_probes(gallery, probes, model_id)
    approximate_engine = choice.engine != "exact"
    chosen = engine_for(choice, settings)
    if approximate_engine and approximate is not None:
        approximate.nprobe = choice.nprobe  # type: ignore[attr-defined]
        chosen = approximate
    scores, ids = chosen.search(gallery, matrix, k)
    audit = failed = fallback = None
    if approximate_engine:
        audit = _audit(gallery, matrix, scores, ids, settings, review.value, band.floor)
        if not audit.passed:
            failed = audit
            scores, ids, audit, fallback = _search_again(
                gallery, matrix, k, chosen, choice, settings, review.value, band.floor
            )
    candidates = assemble_candidates(
        gallery, probe_ids, matrix, scores, ids, k=k, threshold=review.value
    )
    sources = candidates["source"].to_pylist()
    return candidates, SearchReport(
        probes=len(probes),
        gallery_size=gallery.size,
        engine=chosen.name if approximate_engine else choice.engine,
        reason=choice.reason,
        review=review,
        expected_false=expected,
        candidates=candidates.num_rows,
        from_batch=sources.count(CandidateSource.BATCH),
        seconds=time.perf_counter() - started,
        audit=audit,
        band=band,
        nprobe=choice.nprobe if approximate_engine else None,
        fallback=fallback,
        failed_audit=failed,
    )


def _audit(
    gallery: Gallery,
    matrix: Scores,
    scores: Scores,
    ids: NDArray[np.int64],
    settings: Settings,
    threshold: float,
    band_floor: float,
) -> RecallAudit:
    return audit_recall(
        gallery,
        matrix,
        scores,
        ids,
        threshold=threshold,
        band_floor=band_floor,
        fraction=settings.search.audit_fraction,
        floor=settings.search.recall_floor,
    )


def _search_again(
    gallery: Gallery,
    matrix: Scores,
    k: int,
    engine: SearchEngine,
    choice: EngineChoice,
    settings: Settings,
    threshold: float,
    band_floor: float,
) -> tuple[Scores, NDArray[np.int64], RecallAudit | None, str]:
    """After a failed audit: the smallest higher nprobe the gallery measured to reach the
    target, if its audit (same probes) passes, else the exact sweep (no audit: nothing to
    miss)."""
    recall = gallery.manifest.recall
    target = settings.search.target_recall
    higher = [
        p.nprobe
        for p in (recall.points if recall else ())
        if p.nprobe > choice.nprobe and (p.recall_at_or_above(band_floor) or 0.0) >= target
    ]
    if higher and hasattr(engine, "nprobe"):
        engine.nprobe = higher[0]
        scores, ids = engine.search(gallery, matrix, k)
        audit = _audit(gallery, matrix, scores, ids, settings, threshold, band_floor)
        if audit.passed:
            return scores, ids, audit, f"nprobe {higher[0]}"
    scores, ids = ExactSweepEngine(device=settings.search.device).search(gallery, matrix, k)
    return scores, ids, None, "exact"
