"""Writing gallery versions: build the first one, add a batch under its ledger entry.

Both train or extend the shared IVF-PQ and publish through a ``Draft``
(``dedup.gallery.publish``): a crash leaves the previous version published. The ledger records
every batch added, so adding one again changes nothing (a re-run of the nightly match is safe).

Example::

    build_gallery(root, enrollment_ids, templates, model_id="dlib-resnet-v1", batch_id="n-1")
    add_batch(root, "n-2", more_ids, more_templates, model_id="dlib-resnet-v1")
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from dedup.errors import GalleryError
from dedup.gallery.layout import (
    COMPACTED_FILE,
    COMPACTED_SCHEMA,
    IDS_SCHEMA,
    LEDGER_FILE,
    LEDGER_SCHEMA,
    TOMBSTONES_FILE,
    TOMBSTONES_SCHEMA,
    VECTOR_DTYPES,
    GalleryManifest,
    PqSpec,
)
from dedup.gallery.lookup import live_enrollments_among
from dedup.gallery.publish import Draft, next_version
from dedup.gallery.reader import (
    Ids,
    current_manifest,
    read_version_table,
)
from dedup.gallery.recipe_choice import RecallTarget, RecipeChoice, choose_recipe
from dedup.gallery.recipes import (
    TRAIN_POINTS_PER_CENTROID,
    default_factory,
    default_shards,
    default_train_size,
    parse_factory,
)
from dedup.gallery.segment_files import read_trained, write_segment
from dedup.gallery.segments import SegmentEntry, is_utf8
from dedup.gallery.storage import GalleryRoot, storage_for
from dedup.gallery.training import jittered, train_index
from dedup.gallery.version_recall import measured_version

UNIT_TOLERANCE = 1e-3

Vectors = npt.NDArray[np.float32]


def build_gallery(
    root: GalleryRoot,
    enrollment_ids: Sequence[str],
    vectors: np.ndarray[Any, Any],
    *,
    model_id: str,
    batch_id: str,
    shards: int | None = None,
    factory: str | None = None,
    vector_dtype: str = "float16",
    train_size: int | None = None,
    seed: int = 0,
    goal: RecallTarget | None = None,
    choices: list[RecipeChoice] | None = None,
) -> GalleryManifest:
    """Train the shared index on a seeded sample, split ids 0..N-1 over shards, measure its
    recall by score band (recorded in the manifest), publish v1.

    ``factory`` defaults to the recipe ``choose_recipe`` measures best for ``goal`` (the
    default recipe when no goal is given); the choice, with what was tried, is appended to
    ``choices`` if given. ``train_size`` defaults to 64 points per centroid of the larger
    k-means (coarse lists or PQ codebook), at most N.
    """
    names = _checked_enrollment_ids(enrollment_ids)
    data = _checked_vectors(vectors, len(names))
    n, dimension = data.shape
    if n == 0:
        raise GalleryError("cannot build a gallery from no templates: the index trains on them")
    shards = shards or default_shards(n)
    if shards < 1 or vector_dtype not in VECTOR_DTYPES:
        raise GalleryError(f"need shards >= 1 and vector_dtype in {VECTOR_DTYPES}")
    if factory is not None:
        choice = RecipeChoice(factory, "given")
    elif goal is not None:
        choice = choose_recipe(data, shards, goal, seed=seed)
    else:
        choice = RecipeChoice(default_factory(n, dimension, shards), "the default (no goal)")
    if choices is not None:
        choices.append(choice)
    recipe = choice.factory
    spec = parse_factory(recipe, dimension)
    sample = min(n, train_size or default_train_size(n, spec))
    needed = max(spec.nlist, (1 << spec.nbits))
    if sample < needed and factory is not None:
        raise GalleryError(
            f"{recipe} needs at least {max(spec.nlist, (1 << spec.nbits))} training templates, "
            f"got {sample}: choose a smaller factory"
        )
    storage = storage_for(root)
    with storage.lock():
        if storage.read_current() is not None:
            raise GalleryError(f"a gallery already exists at {root}; add batches to it instead")
        rows = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
        training = np.ascontiguousarray(data[rows])
        if len(training) < needed:  # only the default recipe gets here: a tiny gallery
            training = jittered(training, TRAIN_POINTS_PER_CENTROID * needed, seed)
        trained = train_index(recipe, spec, training, seed)
        assignment = _fill_smallest_first([0] * shards, n)
        draft = Draft(storage, current=None)
        trained_key, trained_sha256 = draft.write_trained(trained, secrets.token_hex(8))
        segment = _write_batch_segment(draft, trained, 0, data, names, assignment, batch_id,
                                       shards, vector_dtype)  # fmt: skip
        draft.write_table(TOMBSTONES_FILE, TOMBSTONES_SCHEMA.empty_table())
        draft.write_table(COMPACTED_FILE, COMPACTED_SCHEMA.empty_table())
        draft.write_table(LEDGER_FILE, _ledger_rows(batch_id, 0, n))
        manifest = GalleryManifest(
            version=1,
            model_id=model_id,
            dimension=dimension,
            factory=recipe,
            nlist=spec.nlist,
            pq=PqSpec(spec.m, spec.nbits),
            vector_dtype=vector_dtype,
            size=n,
            next_id=n,
            shard_count=shards,
            trained=trained_key,
            trained_sha256=trained_sha256,
            segments=(segment,),
            files=draft.files,
            created_at=datetime.now(UTC),
        )
        return draft.publish(measured_version(draft, manifest, goal))


def add_batch(
    root: GalleryRoot,
    batch_id: str,
    enrollment_ids: Sequence[str],
    vectors: np.ndarray[Any, Any],
    *,
    model_id: str,
    goal: RecallTarget | None = None,
) -> GalleryManifest:
    """Add one batch under new ids; a batch already in the ledger changes nothing at all.

    The batch becomes one new segment (its vectors, ids and per-shard codes), and the new
    version names the previous version's segments as they are: the add writes O(batch)
    bytes, whatever the gallery's size. New templates fill the smallest shards first.
    """
    names = _checked_enrollment_ids(enrollment_ids)
    data = _checked_vectors(vectors, len(names))
    storage = storage_for(root)
    with storage.lock():
        prefix, manifest = current_manifest(storage)
        if model_id != manifest.model_id:
            raise GalleryError(
                f"batch {batch_id!r} holds {model_id!r} templates but the gallery holds "
                f"{manifest.model_id!r} ones: a gallery never mixes models"
            )
        ledger = read_version_table(
            storage, prefix, manifest, LEDGER_FILE, LEDGER_SCHEMA, verify=True
        )
        if batch_id in ledger["batch_id"].to_pylist():
            return manifest
        if data.shape[1] != manifest.dimension:
            raise GalleryError(
                f"templates are {data.shape[1]}-d, the gallery {manifest.dimension}-d"
            )
        pending, compacted = (
            read_version_table(storage, prefix, manifest, name, schema, verify=True)
            for name, schema in (
                (TOMBSTONES_FILE, TOMBSTONES_SCHEMA),
                (COMPACTED_FILE, COMPACTED_SCHEMA),
            )
        )
        clash = live_enrollments_among(storage, manifest, names, pending["gallery_id"].to_numpy())
        if clash.num_rows:
            raise GalleryError(
                f"{clash.num_rows} enrollments of batch {batch_id!r} are already in the gallery "
                f"(e.g. {clash['enrollment_id'][0].as_py()!r})"
            )
        assignment = _fill_smallest_first([s.count for s in manifest.shards], len(names))
        draft = Draft(storage, current=manifest)
        segments = manifest.segments
        if names:
            trained = read_trained(storage, manifest, verify=True)
            segment = _write_batch_segment(draft, trained, manifest.next_id, data, names,
                                           assignment, batch_id, manifest.shard_count,
                                           manifest.vector_dtype)  # fmt: skip
            segments = (*segments, segment)
        draft.write_table(TOMBSTONES_FILE, pending)
        draft.write_table(COMPACTED_FILE, compacted)
        added = _ledger_rows(batch_id, manifest.next_id, len(names))
        draft.write_table(LEDGER_FILE, pa.concat_tables([ledger, added]))
        added_version = next_version(
            manifest, draft, segments, manifest.size + len(names), len(names)
        )
        new_ids = np.arange(manifest.next_id, manifest.next_id + len(names), dtype=np.int64)
        return draft.publish(measured_version(draft, added_version, goal, new_ids))


def _write_batch_segment(
    draft: Draft,
    trained: faiss.Index,
    first_id: int,
    data: Vectors,
    names: Sequence[str],
    assignment: npt.NDArray[np.int32],
    batch_id: str,
    shard_count: int,
    vector_dtype: str,
) -> SegmentEntry:
    """One batch as a segment: ids ``first_id..``, each shard's codes in a trained copy."""
    ids = np.arange(first_id, first_id + len(names), dtype=np.int64)
    indexes = {}
    for shard in range(shard_count):
        chosen = assignment == shard
        if chosen.any():
            index = faiss.clone_index(trained)
            index.add_with_ids(data[chosen], ids[chosen])
            indexes[shard] = index
    return write_segment(
        draft.storage,
        first_id=first_id,
        parts=[data],
        dtype=vector_dtype,
        ids=_ids_rows(ids, names, assignment, batch_id),
        shards=indexes,
        shard_count=shard_count,
    )


def _checked_enrollment_ids(enrollment_ids: Sequence[str]) -> list[str]:
    names = list(enrollment_ids)
    if not all(isinstance(name, str) and name for name in names):
        raise GalleryError("enrollment ids must be non-empty strings")
    if bad := next((name for name in names if not is_utf8(name)), None):
        raise GalleryError(f"enrollment id {bad!r} is not valid UTF-8 (it holds a lone surrogate)")
    if len(set(names)) != len(names):
        twice = next(name for name, n in Counter(names).items() if n > 1)
        raise GalleryError(f"enrollment id {twice!r} appears more than once in the batch")
    return names


def _checked_vectors(vectors: np.ndarray[Any, Any], count: int) -> Vectors:
    """Only ``count`` finite, L2-normalised rows: inner product is cosine only for those."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[0] != count or array.shape[1] < 1:
        raise GalleryError(
            f"expected {count} template vectors, got an array of shape {array.shape}"
        )
    data = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(data).all():
        raise GalleryError("template vectors hold NaN or infinite values")
    norms = np.linalg.norm(data, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > UNIT_TOLERANCE)
    if bad.size:
        raise GalleryError(
            f"{bad.size} template vectors are not unit-length (row {bad[0]} has norm "
            f"{norms[bad[0]]:.4f}); templates must be L2-normalised"
        )
    return data


def _fill_smallest_first(counts: Sequence[int], new: int) -> npt.NDArray[np.int32]:
    """The shard of each of ``new`` templates: water-fill the emptiest shards first.

    >>> _fill_smallest_first([3, 1, 1], 3).tolist()
    [1, 1, 2]
    """
    before = np.asarray(counts, dtype=np.int64)
    after = before.copy()
    remaining = new
    while remaining:
        low = after.min()
        at_low = np.flatnonzero(after == low)
        higher = after[after > low]
        room = (int(higher.min()) - low) * at_low.size if higher.size else remaining
        if room >= remaining:
            share, extra = divmod(remaining, at_low.size)
            after[at_low] += share
            after[at_low[:extra]] += 1
            remaining = 0
        else:
            after[at_low] = higher.min()
            remaining -= room
    return np.repeat(np.arange(len(before), dtype=np.int32), after - before)


def _ids_rows(
    ids: Ids, names: Sequence[str], shards: npt.NDArray[np.int32], batch_id: str
) -> pa.Table:
    return pa.table(
        {
            "gallery_id": ids,
            "enrollment_id": pa.array(names, pa.string()),
            "shard": shards,
            "batch_id": pa.array([batch_id] * len(names), pa.string()),
        },
        schema=IDS_SCHEMA,
    )


def _ledger_rows(batch_id: str, first_id: int, count: int) -> pa.Table:
    return pa.table(
        {"batch_id": [batch_id], "first_id": [first_id], "count": [count]}, schema=LEDGER_SCHEMA
    )
