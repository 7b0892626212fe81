"""A batch searched end to end: engine choice, search, recall audit, candidates, the report."""

from __future__ import annotations

import time
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
    SearchEngine,
    check_probes,
    gpu_count,
)
from dedup.gallery.reader import Gallery, open_gallery
from dedup.matching.candidates import assemble_candidates
from dedup.matching.cost_model import choose_engine
from dedup.matching.recall_audit import RecallAudit, RecallBelowFloor, audit_recall
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
        if self.audit is not None:
            a = self.audit
            out.append(
                f"recall audit: {a.found}/{a.exact_candidates} exact candidates found on "
                f"{a.probes_sampled} sampled probes: recall {a.recall:.4f} (floor {a.floor})"
            )
        return out


def engine_for(name: str, settings: Settings) -> SearchEngine:
    if name == "exact":
        return ExactSweepEngine(device=settings.search.device)
    return IvfPqEngine(nprobe=settings.search.nprobe, shortlist=settings.search.shortlist)


def search_probes(
    gallery_root: Path,
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
    """Search a template file, audit (approximate engine only), write the candidates atomically.

    Raises ``RecallBelowFloor`` after writing nothing when the audit fails.
    """
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
    check_audit(report)
    write_atomically(out, lambda path: pq.write_table(candidates, path))
    return report


def check_audit(report: SearchReport) -> None:
    """Raise ``RecallBelowFloor`` when the batch's recall audit failed."""
    audit = report.audit
    if audit is not None and not audit.passed:
        raise RecallBelowFloor(
            f"recall audit failed: {audit.found}/{audit.exact_candidates} exact candidates "
            f"found ({audit.recall:.4f} < floor {audit.floor}); raise search.nprobe or use "
            "the exact engine. No candidates were written."
        )


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
) -> tuple[pa.Table, SearchReport]:
    """The ``candidates`` of a batch of probes, against the gallery and within the batch.

    The threshold comes from the one threshold policy (``review_threshold``), whose sentence
    the report's lines carry. The cost model picks the engine; ``approximate`` replaces the
    in-process IVF-PQ engine (the Ray shard actors, for example). The caller checks the audit
    (``check_audit``) before it keeps any candidate, after publishing the figures if it
    publishes them.
    """
    started = time.perf_counter()
    k = k or settings.search.k
    review = review_threshold(
        settings.matching, gallery, threshold=threshold, target_fpir=target_fpir
    )
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
    )
    matrix = check_probes(gallery, probes, model_id)
    chosen = engine_for(choice.engine, settings)
    if choice.engine != "exact" and approximate is not None:
        chosen = approximate
    scores, ids = chosen.search(gallery, matrix, k)
    audit = None
    if choice.engine != "exact":
        audit = audit_recall(
            gallery,
            matrix,
            scores,
            ids,
            threshold=review.value,
            fraction=settings.search.audit_fraction,
            floor=settings.search.recall_floor,
        )
    candidates = assemble_candidates(
        gallery, probe_ids, matrix, scores, ids, k=k, threshold=review.value
    )
    sources = candidates["source"].to_pylist()
    return candidates, SearchReport(
        probes=len(probes),
        gallery_size=gallery.size,
        engine=chosen.name if choice.engine != "exact" else choice.engine,
        reason=choice.reason,
        review=review,
        expected_false=expected,
        candidates=candidates.num_rows,
        from_batch=sources.count(CandidateSource.BATCH),
        seconds=time.perf_counter() - started,
        audit=audit,
    )
