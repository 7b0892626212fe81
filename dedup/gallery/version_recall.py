"""The recall a gallery version records: measured at build, re-measured as the gallery grows.

``measured_version`` gives a draft's manifest its ``recall`` before the writer publishes it
(``dedup.gallery.writer``): a build measures against the exact search; an add keeps the
measurement until the gallery has outgrown it (``needs_remeasuring``), then measures planted
mates only (``measure_mates``). ``dedup.gallery.recall`` does the measuring itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from dedup.gallery.engines import Searchable
from dedup.gallery.layout import GalleryManifest
from dedup.gallery.publish import Draft
from dedup.gallery.recall import measure_recall
from dedup.gallery.recall_bands import MeasuredRecall, nprobe_ladder
from dedup.gallery.recipe_choice import RecallTarget

Ids = npt.NDArray[np.int64]

# What a measurement re-scores and keeps when no goal says (the search settings' defaults).
DEFAULT_SHORTLIST = 300
DEFAULT_K = 10
# Planted mates an add measures, half of them in the batch just added.
ADD_QUERIES = 1000
# An add re-measures the recall once the gallery has grown this much since it was measured.
REMEASURE_GROWTH = 0.10
# A build measures on 2,000 queries, a gallery below ``SMALL_GALLERY`` on one in ten of its
# templates (200 at least): the cost model gives so small a gallery the exact sweep anyway.
BUILD_QUERIES = 2000
SMALL_GALLERY = 20_000


def measured_version(
    draft: Draft,
    manifest: GalleryManifest,
    goal: RecallTarget | None,
    new_ids: Ids | None = None,
) -> GalleryManifest:
    """``manifest`` with its index's recall measured on the draft's own templates.

    A build (``new_ids`` None) measures against the exact search at every power-of-two
    ``nprobe``. An add keeps the measurement it had unless the gallery has outgrown it
    (``needs_remeasuring``) and a goal gives the band to centre on; it then measures only
    planted mates (no exact sweep), half of them among the batch just added, at the ``nprobe``
    values around the operating point measured before (``ADD_QUERIES`` queries).
    """
    if manifest.size < 2 or (new_ids is not None and not len(new_ids)):
        return manifest
    previous = manifest.recall
    if new_ids is None or previous is None:
        shortlist, k = (goal.shortlist, goal.k) if goal else (DEFAULT_SHORTLIST, DEFAULT_K)
        measured = measure_recall(
            draft.gallery(manifest),
            nprobe_ladder(manifest.nlist),
            shortlist=shortlist,
            k=k,
            queries=build_queries(manifest.size),
            method="exact",
        )
    elif goal is None or not needs_remeasuring(previous, manifest.size):
        return manifest  # no band to centre on, or too little growth to move the recall
    else:
        measured = measure_mates(draft.gallery(manifest), manifest, previous, goal, new_ids)
    return dataclasses.replace(
        manifest, recall=dataclasses.replace(measured, gallery_size=manifest.size)
    )


def measure_mates(
    gallery: Searchable,
    manifest: GalleryManifest,
    previous: MeasuredRecall,
    goal: RecallTarget,
    new_ids: Ids,
) -> MeasuredRecall:
    """An add's measurement of ``gallery`` (the version ``manifest`` describes): planted mates
    only, half of them among ``new_ids``, at the ``nprobe`` values around the operating point
    of the ``previous`` measurement."""
    point = previous.operating_point(goal.floor_score, goal.target)
    around = point.nprobe if point is not None else previous.points[-1].nprobe
    rng = np.random.default_rng([manifest.version, 3])
    older = manifest.next_id - len(new_ids)
    old = rng.choice(older, size=min(older, ADD_QUERIES), replace=False) if older else new_ids[:0]
    picked = np.concatenate([rng.permutation(new_ids)[: ADD_QUERIES // 2], old])
    return measure_recall(
        gallery,
        nprobe_ladder(manifest.nlist, around=around),
        shortlist=previous.shortlist,
        k=previous.k,
        queries=min(ADD_QUERIES, build_queries(manifest.size)),
        method="mates",
        seed=manifest.version,
        pick_from=np.sort(picked).astype(np.int64),
    )


def needs_remeasuring(measured: MeasuredRecall, size: int) -> bool:
    """Whether a gallery of ``size`` live templates has outgrown the measurement of its index.

    An add encodes its batch with the quantizer and codebooks the build trained, so what moves
    the recall is only the gallery's growth: longer lists put more impostors between a probe
    and its mate. The recall is re-measured once the gallery holds ``REMEASURE_GROWTH`` more
    templates than when it was last measured; that costs O(N) (it searches the whole index),
    once per 10% of growth, so O(1) per template added. Each night's recall audit measures the
    night's own probes in between.

    >>> measured = MeasuredRecall("exact", 10, 10, 300, (), gallery_size=1_000_000)
    >>> needs_remeasuring(measured, 1_090_000), needs_remeasuring(measured, 1_100_000)
    (False, True)
    """
    return not measured.gallery_size or size >= measured.gallery_size * (1 + REMEASURE_GROWTH)


def build_queries(size: int) -> int:
    """
    >>> build_queries(1_500), build_queries(19_999), build_queries(1_000_000)
    (200, 1999, 2000)
    """
    return BUILD_QUERIES if size >= SMALL_GALLERY else max(200, size // 10)
