"""Candidate rows of a batch: from a gallery search's result, and from the in-batch search.

Every probe is also searched exactly against the other probes of its batch, so two new
enrollments of one person meet even though neither is in the gallery yet. Rows at or above
the review threshold become ``candidates`` (``dedup.contracts.schemas.CANDIDATES``), each
with its ``CandidateSource``.

Example::

    rows = search_batch(gallery, probe_ids, probes, k=20, threshold=t, engine=IvfPqEngine())
"""

from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from dedup.contracts.schemas import CANDIDATES, CandidateSource
from dedup.errors import GalleryError
from dedup.gallery.engines import Ids, Scores, SearchEngine, check_probes, top_k
from dedup.gallery.reader import Gallery


def in_batch(probes: Scores, k: int) -> tuple[Scores, Ids]:
    """Each probe against the other probes of its batch (exact), itself excluded."""
    want = min(len(probes), k + 1)
    scores, ids = faiss.knn(probes, probes, want, metric=faiss.METRIC_INNER_PRODUCT)
    ids = ids.astype(np.int64)
    own = ids == np.arange(len(probes))[:, None]
    scores = np.where(own, -np.inf, scores).astype(np.float32)
    return top_k(scores, np.where(own, -1, ids), min(k, max(len(probes) - 1, 1)))


def candidate_rows(
    probe_ids: list[str],
    scores: Scores,
    names: NDArray[np.object_],
    threshold: float,
    source: CandidateSource,
) -> pa.Table:
    """Rows at or above the threshold; rank counts from 1 within the probe's list."""
    keep = np.isfinite(scores) & (scores >= threshold)
    rows, cols = np.nonzero(keep)
    return pa.table(
        {
            "probe_id": pa.array([probe_ids[r] for r in rows], pa.string()),
            "candidate_id": pa.array(names[rows, cols].tolist(), pa.string()),
            "score": pa.array(scores[rows, cols], pa.float32()),
            "rank": pa.array(cols + 1, pa.int32()),
            "source": pa.array([source] * len(rows), pa.string()),
        },
        schema=CANDIDATES,
    )


def search_batch(
    gallery: Gallery,
    probe_ids: list[str],
    probes: NDArray[np.floating],
    *,
    k: int,
    threshold: float,
    engine: SearchEngine,
    model_id: str | None = None,
) -> pa.Table:
    """The ``candidates`` of a batch: against the gallery, and against each other."""
    matrix = check_probes(gallery, probes, model_id)
    scores, ids = engine.search(gallery, matrix, k)
    return assemble_candidates(gallery, probe_ids, matrix, scores, ids, k=k, threshold=threshold)


def assemble_candidates(
    gallery: Gallery,
    probe_ids: list[str],
    probes: Scores,
    scores: Scores,
    ids: Ids,
    *,
    k: int,
    threshold: float,
) -> pa.Table:
    """Candidate rows from a gallery search's result, plus the in-batch search."""
    if len(set(probe_ids)) != len(probe_ids) or len(probe_ids) != len(probes):
        raise GalleryError("probe ids must be unique, one per probe vector")
    names = gallery.enrollment_ids(ids)
    from_gallery = candidate_rows(probe_ids, scores, names, threshold, CandidateSource.GALLERY)
    return pa.concat_tables([from_gallery, batch_candidates(probe_ids, probes, k, threshold)])


def batch_candidates(probe_ids: list[str], probes: Scores, k: int, threshold: float) -> pa.Table:
    """Candidate rows of the probes against each other (source ``batch``)."""
    if len(probes) < 2:
        return CANDIDATES.empty_table()
    batch_scores, batch_ids = in_batch(probes, k)
    batch_names = np.array([*probe_ids, None], dtype=object)[batch_ids]
    return candidate_rows(probe_ids, batch_scores, batch_names, threshold, CandidateSource.BATCH)
