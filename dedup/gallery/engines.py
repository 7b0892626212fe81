"""The gallery's two search engines behind one interface, over a published version.

- ``IvfPqEngine``: every probe fans out to every shard (IVF-PQ, ``nprobe`` lists), the
  compressed-domain top lists are merged, and the survivors are re-scored exactly against the
  full vectors before any threshold is applied.
- ``ExactSweepEngine``: brute-force inner product (``faiss.knn``) over the full vectors, tiled,
  so the whole batch reads the gallery once.

Both return, per probe, the ``k`` best live gallery ids with exact cosine scores; erased ids
(tombstones) are never returned. What the scores mean (thresholds, candidate rows, the
in-batch search, which engine a batch gets) is matching's business: ``dedup.matching``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import faiss
import numpy as np
from numpy.typing import NDArray

from dedup.errors import GalleryError
from dedup.gallery.reader import Gallery

Scores = NDArray[np.float32]
Ids = NDArray[np.int64]


class Searchable(Protocol):
    """What the engines read of a gallery: a published ``Gallery``, or an index being tried
    before it is published (``dedup.gallery.recipe_choice``)."""

    @property
    def shards(self) -> list[tuple[int, faiss.Index]]: ...

    @property
    def vectors(self) -> Any:
        """Row g = gallery id g: fancy indexing by ids and slicing, ``len`` = next id."""
        ...

    @property
    def tombstones(self) -> Ids: ...

    def is_live(self, ids: Any) -> NDArray[np.bool_]: ...


class SearchEngine(Protocol):
    name: str

    def search(self, gallery: Gallery, probes: Scores, k: int) -> tuple[Scores, Ids]:
        """(scores, gallery ids), each (B, k), best first; id -1 where fewer than k exist."""
        ...


def top_k(scores: Scores, ids: Ids, k: int) -> tuple[Scores, Ids]:
    """Best k of each row, sorted; -inf / -1 pad rows with fewer than k candidates."""
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return (
        np.take_along_axis(top_scores, order, axis=1).astype(np.float32),
        np.take_along_axis(np.take_along_axis(ids, part, axis=1), order, axis=1),
    )


def exact_scores(gallery: Searchable, probes: Scores, ids: Ids) -> Scores:
    """Cosine of each probe with each of its candidate ids (-1 gives -inf), from full vectors."""
    safe = np.where(ids >= 0, ids, 0)
    full = np.asarray(gallery.vectors[safe.ravel()], dtype=np.float32).reshape(*ids.shape, -1)
    scores = np.einsum("bd,bkd->bk", probes, full).astype(np.float32)
    return np.where(ids >= 0, scores, -np.inf).astype(np.float32)


def drop_erased(gallery: Searchable, scores: Scores, ids: Ids) -> tuple[Scores, Ids]:
    dead = (ids < 0) | ~gallery.is_live(np.where(ids >= 0, ids, 0))
    return np.where(dead, -np.inf, scores).astype(np.float32), np.where(dead, -1, ids)


@dataclass
class IvfPqEngine:
    nprobe: int = 64
    # Compressed-domain candidates taken from each shard before exact re-scoring.
    shortlist: int = 100
    name: str = "ivfpq"

    def search(self, gallery: Searchable, probes: Scores, k: int) -> tuple[Scores, Ids]:
        per_shard = max(self.shortlist, k)
        found_ids = []
        for _, shard in gallery.shards:
            faiss.extract_index_ivf(shard).nprobe = self.nprobe
            _, ids = shard.search(probes, per_shard)
            found_ids.append(ids)
        merged = np.concatenate(found_ids, axis=1)
        scores, ids = drop_erased(gallery, exact_scores(gallery, probes, merged), merged)
        return top_k(scores, ids, k)


class TileSearch(Protocol):
    """Brute-force inner-product top-k of one batch of probes against one tile of the full
    vectors at a time; the probes are prepared once, when the search is made."""

    def __call__(self, tile: NDArray[Any], k: int) -> tuple[Scores, Ids]: ...


class CpuTileSearch:
    def __init__(self, probes: Scores) -> None:
        self.probes = probes

    def __call__(self, tile: NDArray[Any], k: int) -> tuple[Scores, Ids]:
        matrix = np.asarray(tile, dtype=np.float32)
        scores, ids = faiss.knn(self.probes, matrix, k, metric=faiss.METRIC_INNER_PRODUCT)
        return scores.astype(np.float32), ids.astype(np.int64)


class GpuTileSearch:
    """``faiss.knn_gpu`` in fp16: the tile goes to the GPU as stored (float16 by default), the
    probes are cast once, and the GPU's tensor cores do the products with fp32 accumulation.

    Not yet run on a GPU: no GPU was lent while it was written; the tests drive it through a
    stand-in for ``faiss.knn_gpu`` that checks what it is given.
    """

    def __init__(self, probes: Scores, gpu: int = 0) -> None:
        self.probes = np.ascontiguousarray(probes, dtype=np.float16)
        self.gpu = gpu
        self.resources = faiss.StandardGpuResources()

    def __call__(self, tile: NDArray[Any], k: int) -> tuple[Scores, Ids]:
        scores, ids = faiss.knn_gpu(
            self.resources,
            self.probes,
            np.ascontiguousarray(tile, dtype=np.float16),
            k,
            metric=faiss.METRIC_INNER_PRODUCT,
            device=self.gpu,
        )
        return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)


def gpu_count() -> int:
    """GPUs FAISS can use here (0 with the faiss-cpu build)."""
    if not hasattr(faiss, "knn_gpu") or not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(faiss.get_num_gpus())


def tile_search(device: str, probes: Scores) -> TileSearch:
    """The tile search for ``auto`` (a GPU where FAISS sees one), ``cpu`` or ``gpu``."""
    if device not in ("auto", "cpu", "gpu"):
        raise GalleryError(f"unknown search device {device!r}: auto, cpu or gpu")
    gpus = gpu_count() if device != "cpu" else 0
    if device == "gpu" and not gpus:
        raise GalleryError("search device 'gpu' asked for, but FAISS sees no GPU here")
    return GpuTileSearch(probes) if gpus else CpuTileSearch(probes)


@dataclass
class ExactSweepEngine:
    tile_rows: int = 1 << 20
    name: str = "exact"
    # "auto": faiss.knn_gpu in fp16 where FAISS sees a GPU, faiss.knn on the CPU otherwise.
    device: str = "auto"

    def search(self, gallery: Searchable, probes: Scores, k: int) -> tuple[Scores, Ids]:
        knn = tile_search(self.device, probes)
        total = len(gallery.vectors)
        best_scores = np.full((len(probes), k), -np.inf, dtype=np.float32)
        best_ids = np.full((len(probes), k), -1, dtype=np.int64)
        dead = gallery.tombstones
        for start in range(0, total, self.tile_rows):
            tile = gallery.vectors[start : start + self.tile_rows]
            erased_here = int(np.count_nonzero((dead >= start) & (dead < start + len(tile))))
            want = min(len(tile), k + erased_here)
            scores, local = knn(tile, want)
            ids = np.where(local >= 0, local + start, -1).astype(np.int64)
            scores, ids = drop_erased(gallery, scores, ids)
            best_scores, best_ids = top_k(
                np.concatenate([best_scores, scores], axis=1),
                np.concatenate([best_ids, ids], axis=1),
                k,
            )
        return best_scores, best_ids


def check_probes(gallery: Gallery, probes: NDArray[np.floating], model_id: str | None) -> Scores:
    """The probes as the contiguous float32 matrix an engine takes, refused unless they are
    finite templates of the gallery's model and dimension (a gallery never mixes models)."""
    if model_id is not None and model_id != gallery.model_id:
        raise GalleryError(
            f"probes are {model_id!r} templates but the gallery holds {gallery.model_id!r}: "
            "a gallery never mixes models"
        )
    if probes.ndim != 2 or probes.shape[1] != gallery.dimension:
        raise GalleryError(f"probes must be (B, {gallery.dimension}); got {probes.shape}")
    matrix = np.ascontiguousarray(probes, dtype=np.float32)
    if not np.all(np.isfinite(matrix)):
        raise GalleryError("probes hold non-finite values")
    return matrix
