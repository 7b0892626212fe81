"""The match job: a batch's templates against the gallery and each other, into ``candidates``.

1. Read the batch's templates of the configured model from the Delta table ``templates``
   (delta-rs), refusing a batch whose embedding has not finished.
2. Search them 1:N against the published gallery and within the batch (``search_gallery``:
   the cost model picks the exact sweep or IVF-PQ, IVF-PQ runs on one Ray actor per shard
   unless ``ray=False``, and the recall audit checks it). The first batch of a registry has
   no gallery yet and is searched within itself only. Either way the threshold comes from
   ``dedup.matching.threshold_policy``, whose sentence the report carries.
3. Write the candidate rows to ``_work/match/<batch>/candidates.parquet`` (atomically, once:
   a re-run reuses them, so it never searches a gallery that already holds this batch), then
   MERGE them into ``candidates``, inserting only keys the table lacks.
4. Add every enrollment of the batch to the gallery under the batch's id, those with
   candidates included: tomorrow's batch is searched against everyone staged before it, a
   person whose case is still open included, and a duplicate stays as another capture of its
   identity. What became of an enrollment lives in tables, not in whether it is in the
   gallery; erasure is the only way out. The gallery's ledger makes a repeated add change
   nothing. Each add is one new segment; when the tiered merge policy plans a merge
   (``dedup.gallery.segments.plan_merges``), the job compacts the gallery, so that the segment
   count stays bounded without an operator's cron.

A crash anywhere leaves what was written so far; running the job again finishes it with the
same rows and the same gallery as an uninterrupted run.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.console import RenderableType

from dedup.contracts.schemas import CANDIDATES, CANDIDATES_TABLE, CandidateSource
from dedup.crash_points import crash_point
from dedup.errors import DedupError
from dedup.gallery.engines import Scores
from dedup.gallery.erasure import compact
from dedup.gallery.reader import gallery_exists, open_gallery, resolve_version
from dedup.gallery.recipe_choice import RecallTarget
from dedup.gallery.segments import plan_merges
from dedup.gallery.storage import GalleryLocation, GalleryRoot, gallery_location
from dedup.gallery.writer import add_batch, build_gallery
from dedup.matching.batch_search import SearchReport, search_gallery
from dedup.matching.candidates import batch_candidates
from dedup.matching.genuine_band import genuine_band
from dedup.matching.threshold_policy import ReviewThreshold, review_threshold
from dedup.observability.job_metrics import job_metrics, publish, search_registry
from dedup.settings import Settings
from pipelines.job_report import Figures, JobReport
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.lake.readers import batch_templates, duplicate_scores
from pipelines.lake.work_files import WorkFolder

JOB = "dedup_match"
# The batch's candidate rows as its search found them, written once the search is done.
RESULTS_FILE = "candidates.parquet"
# The search's figures (threshold, its target, predicted false candidates, the audit), written
# with the rows so that a re-run that reuses the rows reports the same figures.
SEARCH_FILE = "search.json"


@dataclass(frozen=True, kw_only=True)
class MatchReport(JobReport):
    model_id: str
    probes: int
    candidates: int
    with_candidates: int
    unique: int
    gallery_version: int
    gallery_size: int
    # None when there was no gallery yet, or the rows of an earlier run were reused.
    search: SearchReport | None
    reused: bool
    # Where the search's metrics went (or why they did not).
    metrics: list[str]
    # The threshold policy's sentence (``dedup.matching.threshold_policy``): the threshold
    # searched at and why; None when the rows of an earlier run were reused.
    threshold_sentence: str | None = None
    # Candidate rows by source (``CandidateSource``).
    from_gallery: int = 0
    from_batch: int = 0
    # The search's figures (``search_figures``); empty when an earlier run's rows were
    # reused and that run left none.
    search_figures: Figures = field(default_factory=dict)

    def figures(self) -> Figures:
        """Rows in: the batch's templates; out: its candidate rows; with the threshold, its
        target FPIR (None for a fixed threshold), the predicted false candidates and the
        recall audit's figures."""
        return {
            **self.timing(self.probes, self.candidates),
            "model": self.model_id,
            "probes": self.probes,
            "candidates": self.candidates,
            "candidates_gallery": self.from_gallery,
            "candidates_batch": self.from_batch,
            "with_candidates": self.with_candidates,
            "unique": self.unique,
            "gallery_version": self.gallery_version,
            "gallery_size_after": self.gallery_size,
            "reused": int(self.reused),
            **self.search_figures,
        }

    def summary(self) -> list[RenderableType]:
        if self.search is not None:
            lines: list[RenderableType] = list(self.search.lines())
        elif self.reused:
            lines = ["the candidates of an earlier run of this batch were reused"]
        else:
            lines = [
                *([self.threshold_sentence] if self.threshold_sentence else []),
                "no gallery yet: the batch was searched within itself only",
            ]
        lines += [f"metrics: {where}" for where in self.metrics]
        lines.append(
            f"batch {self.batch_id}: {self.probes} templates, {self.candidates} candidate "
            f"rows for {self.with_candidates} enrollments (to adjudication), {self.unique} "
            f"with none; all {self.probes} in the gallery (version {self.gallery_version}, "
            f"{self.gallery_size} templates) in {self.seconds:.1f} s"
        )
        return lines


def search_candidates(
    settings: Settings,
    gallery: GalleryRoot,
    ids: list[str],
    vectors: Scores,
    *,
    ray: bool,
    threshold: float | None,
    target_fpir: float | None,
    log_file: Path | None = None,
    duplicate_scores: Sequence[float] = (),
) -> tuple[pa.Table, SearchReport | None, ReviewThreshold]:
    """The batch's candidate rows (``CANDIDATES``), the search's report when it had a
    gallery to search, and the threshold the policy chose."""
    gallery = gallery_location(gallery, settings)
    if not gallery_exists(gallery):
        review = review_threshold(
            settings.matching, None, threshold=threshold, target_fpir=target_fpir
        )
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        found = batch_candidates(ids, matrix, settings.search.k, review.value)
        return found, None, review
    with ExitStack() as stack:
        shards = None
        if ray:
            from pipelines.ray.shard_actors import RayShardSearch

            shards = stack.enter_context(
                RayShardSearch(
                    settings.search.nprobe or 1,  # search_gallery sets the operating point
                    settings.search.shortlist,
                    address=settings.embed.ray_address,
                    log_file=log_file,
                )
            )
        found, report = search_gallery(
            open_gallery(gallery),
            ids,
            vectors,
            settings,
            threshold=threshold,
            target_fpir=target_fpir,
            model_id=settings.model,
            approximate=shards,
            duplicate_scores=duplicate_scores,
        )
        return found, report, report.review


def lake_rows(candidates: pa.Table, batch_id: str, model_id: str, now: dt.datetime) -> pa.Table:
    count = candidates.num_rows
    return pa.table(
        {
            "batch_id": pa.array([batch_id] * count, pa.string()),
            "model_id": pa.array([model_id] * count, pa.string()),
            **{name: candidates[name] for name in CANDIDATES.names},
            "matched_at": pa.array([now] * count, CANDIDATES_TABLE.field("matched_at").type),
        },
        schema=CANDIDATES_TABLE,
    )


def run_match(
    run: BatchRun,
    gallery: GalleryRoot,
    *,
    ray: bool = True,
    threshold: float | None = None,
    target_fpir: float | None = None,
) -> MatchReport:
    """Match one embedded batch. Safe to run again for the same batch at any time.

    ``gallery`` is a folder or an ``s3://`` location (in the store of the settings' ``s3``
    section), or a ``GalleryLocation``."""
    where = gallery_location(gallery, run.settings)
    with job_metrics(run.settings.metrics, "match", run.batch_id) as metrics:
        report = metrics.done(
            _match(run, where, ray=ray, threshold=threshold, target_fpir=target_fpir)
        )
    return report


def _match(
    run: BatchRun,
    gallery: GalleryLocation,
    *,
    ray: bool,
    threshold: float | None,
    target_fpir: float | None,
) -> MatchReport:
    started = time.perf_counter()
    batch_id, settings = run.batch_id, run.settings
    ids, vectors = batch_templates(
        run.lake_root, batch_id, settings.model, settings.model_spec.dimension
    )
    work = run.begin("match")
    scores = duplicate_scores(run.lake_root, settings.model)
    report = None
    threshold_used = None
    metrics_sent: list[str] = []
    reused = work.exists(RESULTS_FILE)
    if reused:
        rows = work.read_parquet(RESULTS_FILE)
        searched_figures = _read_search_figures(work)
    else:
        found, report, review = search_candidates(
            settings,
            gallery,
            ids,
            vectors,
            ray=ray,
            threshold=threshold,
            target_fpir=target_fpir,
            log_file=work.log_file("ray.log"),
            duplicate_scores=scores,
        )
        threshold_used = review.sentence()
        if report is not None:
            metrics_sent = publish_search(settings, batch_id, report)
        rows = lake_rows(found, batch_id, settings.model, dt.datetime.now(dt.UTC))
        searched_figures = search_figures(review, report)
        figures_json = json.dumps(searched_figures, sort_keys=True).encode("utf-8")
        work.write_bytes(SEARCH_FILE, figures_json)
        work.write_parquet(RESULTS_FILE, rows)
    crash_point("match.after_results")
    # Written even when empty: a night without a candidate is a normal night, and the next
    # step (enqueue) then finds a table that says so.
    DeltaRsTables(run.lake_root).insert_new("candidates", rows)
    crash_point("match.after_candidates")
    flagged = set(rows["probe_id"].to_pylist())
    unique = [name for name in ids if name not in flagged]
    sources = rows["source"].to_pylist()
    goal = recall_goal(settings, scores)
    manifest = add_to_gallery(settings, gallery, batch_id, ids, vectors, goal)
    return MatchReport(
        batch_id=batch_id,
        model_id=settings.model,
        probes=len(ids),
        candidates=rows.num_rows,
        with_candidates=len(flagged),
        unique=len(unique),
        gallery_version=manifest[0],
        gallery_size=manifest[1],
        search=report,
        reused=reused,
        seconds=time.perf_counter() - started,
        metrics=metrics_sent,
        threshold_sentence=threshold_used,
        from_gallery=sources.count(CandidateSource.GALLERY),
        from_batch=sources.count(CandidateSource.BATCH),
        search_figures=searched_figures,
    )


def search_figures(review: ReviewThreshold, report: SearchReport | None) -> Figures:
    """What the batch report and the metrics need of the search: the threshold and its target
    FPIR (None for a given or configured threshold), the gallery size searched, the predicted
    false candidates and the recall audit (None where there was none)."""
    audit = None if report is None else report.audit
    return {
        "engine": "none" if report is None else report.engine,
        "gallery_size": 0 if report is None else report.gallery_size,
        "threshold": round(review.value, 6),
        "target_fpir": review.target_fpir,
        "expected_false": None if report is None else report.expected_false,
        "search_seconds": None if report is None else round(report.seconds, 3),
        "audit_sampled": None if audit is None else audit.probes_sampled,
        "audit_exact_candidates": None if audit is None else audit.exact_candidates,
        "audit_found": None if audit is None else audit.found,
        "audit_recall": None if audit is None else round(audit.recall, 6),
        "audit_floor": None if audit is None else audit.floor,
    }


def _read_search_figures(work: WorkFolder) -> Figures:
    if not work.exists(SEARCH_FILE):
        return {}
    loaded = json.loads(work.read_text(SEARCH_FILE))
    return dict(loaded) if isinstance(loaded, dict) else {}


def searched(run: BatchRun) -> bool:
    """Whether the batch's search is done (its rows written, none or many)."""
    return run.work("match").exists(RESULTS_FILE)


def publish_search(settings: Settings, batch_id: str, report: SearchReport) -> list[str]:
    """Publish the search's figures (recall audit included) before the audit can fail the run;
    a monitoring outage is reported, not fatal."""
    try:
        return publish(search_registry(report.figures()), settings.metrics, JOB, batch_id)
    except DedupError as error:
        return [f"not published: {error}"]


def recall_goal(settings: Settings, duplicate_scores: Sequence[float]) -> RecallTarget:
    """What the gallery's index must reach, measured when it is built or grows: the target
    recall in the genuine band (``genuine_band``) at the search settings' shortlist and k."""
    band = genuine_band(
        settings, settings.model, settings.matching.review_threshold, duplicate_scores
    )
    search = settings.search
    return RecallTarget(band.floor, search.target_recall, search.shortlist, search.k)


def add_to_gallery(
    settings: Settings,
    gallery: GalleryRoot,
    batch_id: str,
    ids: list[str],
    vectors: Scores,
    goal: RecallTarget | None = None,
) -> tuple[int, int]:
    """Add the batch's enrollments to the gallery (building it for the first batch);
    (version, size) of the gallery afterwards, (0, 0) when there is still none."""
    names = list(ids)
    gallery = gallery_location(gallery, settings)
    exists = gallery_exists(gallery)
    if not names:
        if not exists:
            return 0, 0
        _, manifest = resolve_version(gallery)  # the manifest only, no shard loaded
    elif exists:
        manifest = add_batch(gallery, batch_id, names, vectors, model_id=settings.model, goal=goal)
        if plan_merges([segment.rows for segment in manifest.segments]):
            # The tiered merge policy keeps the segment count bounded (docs/capacity.md).
            manifest = compact(gallery)
    else:
        manifest = build_gallery(
            gallery,
            names,
            vectors,
            model_id=settings.model,
            batch_id=batch_id,
            vector_dtype="float16",
            goal=goal,
        )
    return manifest.version, manifest.size
