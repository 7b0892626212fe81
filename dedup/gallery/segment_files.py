"""Writing one segment, and reading a version's shards and vectors back from its segments.

A segment's shard file is the trained index with its coarse quantizer swapped for an empty
one before writing, so it costs this segment's codes plus the small PQ tables, not the
``nlist * d`` floats of the quantizer every segment would otherwise repeat (25 MB a file at
10 M templates). Loading a shard clones the trained index once and moves every segment's
inverted lists into it (``InvertedLists.merge_from``: a copy of the codes, no re-encoding).

Example::

    entry = write_segment(storage, first_id=4000, parts=[batch], dtype="float16",
                          ids=rows, shards={0: index0, 1: index1}, shard_count=2)
    shard = load_shard(storage, manifest, trained, shard_id=1, mmap=False)
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from dedup.errors import GalleryError
from dedup.gallery.layout import GalleryManifest
from dedup.gallery.segments import (
    SEGMENT_IDS,
    SEGMENT_KEYS,
    SEGMENT_VECTORS,
    SEGMENTS_DIR,
    SegmentEntry,
    SegmentVectors,
    enrollment_keys,
    segment_name,
    segment_shard_file,
)
from dedup.gallery.storage import GalleryStorage

COPY_ROWS = 1 << 20  # rows of vectors copied at a time, so a copy never holds the gallery


def write_segment(
    storage: GalleryStorage,
    *,
    first_id: int,
    parts: Sequence[np.ndarray[Any, Any]],
    dtype: str,
    ids: pa.Table,
    shards: Mapping[int, faiss.Index],
    shard_count: int,
    zero: npt.NDArray[np.int64] | None = None,
) -> SegmentEntry:
    """Write a segment whole (staged, then committed) and return its manifest entry.

    ``parts`` are concatenated into the vectors of ids ``first_id..``; rows of ``zero`` (gallery
    ids) are zeroed; ``shards`` maps a shard id to the index holding this segment's entries of
    it (empty ones are left out).
    """
    rows = sum(len(part) for part in parts)
    name = segment_name(first_id, secrets.token_hex(4))
    staged = storage.staging(f"{SEGMENTS_DIR}/{name}")
    files = {
        SEGMENT_VECTORS: storage.write(
            f"{staged}/{SEGMENT_VECTORS}",
            lambda path: _write_vectors(path, parts, dtype, rows, first_id, zero),
        ),
        SEGMENT_IDS: storage.write(f"{staged}/{SEGMENT_IDS}", lambda p: pq.write_table(ids, p)),
        SEGMENT_KEYS: storage.write(
            f"{staged}/{SEGMENT_KEYS}",
            lambda path: _write_keys(path, ids["enrollment_id"].to_pylist()),
        ),
    }
    counts = [0] * shard_count
    for shard, index in shards.items():
        if not index.ntotal:
            continue
        counts[shard] = int(index.ntotal)
        files[segment_shard_file(shard)] = storage.write(
            f"{staged}/{segment_shard_file(shard)}",
            lambda path, idx=index: _write_without_quantizer(idx, str(path)),  # type: ignore[misc]
        )
    storage.commit(staged, f"{SEGMENTS_DIR}/{name}")
    return SegmentEntry(name, first_id, rows, tuple(counts), files)


def _write_vectors(
    path: Any,
    parts: Sequence[np.ndarray[Any, Any]],
    dtype: str,
    rows: int,
    first_id: int,
    zero: npt.NDArray[np.int64] | None,
) -> None:
    dimension = parts[0].shape[1]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(rows, dimension))
    start = 0
    for part in parts:
        for at in range(0, len(part), COPY_ROWS):
            chunk = part[at : at + COPY_ROWS]
            out[start + at : start + at + len(chunk)] = chunk
        start += len(part)
    if zero is not None and len(zero):
        local = np.sort(zero) - first_id
        out[local[(local >= 0) & (local < rows)]] = 0
    out.flush()
    del out


def _write_keys(path: Any, names: Sequence[str]) -> None:
    with open(path, "wb") as handle:  # np.save on a path would append ".npy" to a temp name
        np.save(handle, np.sort(enrollment_keys(names)))


def read_keys(storage: GalleryStorage, segment: SegmentEntry) -> npt.NDArray[np.uint64]:
    """A segment's sorted enrollment keys, memory-mapped, refused unless they are one uint64
    per ids row (``verify_gallery`` proves they are those rows' keys)."""
    key = segment.key(SEGMENT_KEYS)
    try:
        keys: npt.NDArray[np.uint64] = np.load(storage.local_path(key), mmap_mode="r")
    except (OSError, ValueError) as error:
        raise GalleryError(f"gallery file {key} is unreadable") from error
    if keys.ndim != 1 or keys.dtype != np.dtype("<u8") or len(keys) > segment.rows:
        raise GalleryError(
            f"gallery file {key} is {keys.dtype}{keys.shape}, not at most {segment.rows} keys"
        )
    return keys


def _write_without_quantizer(index: faiss.Index, path: str) -> None:
    """Write ``index`` with an empty coarse quantizer in place of its own (put back after)."""
    ivf: Any = faiss.extract_index_ivf(index)
    kept, owned = ivf.quantizer, ivf.own_fields
    empty = faiss.IndexFlatIP(ivf.d)
    ivf.own_fields = False
    ivf.quantizer = empty
    try:
        faiss.write_index(index, path)
    finally:
        ivf.quantizer = kept
        ivf.own_fields = owned


def read_trained(storage: GalleryStorage, manifest: GalleryManifest, *, verify: bool) -> Any:
    if verify:
        verify_key(storage, manifest.trained, manifest.trained_sha256)
    try:
        return faiss.read_index(str(storage.local_path(manifest.trained)))
    except RuntimeError as error:
        raise GalleryError(f"gallery file {manifest.trained} is unreadable") from error


def load_shard(
    storage: GalleryStorage,
    manifest: GalleryManifest,
    trained: Any,
    shard_id: int,
    *,
    mmap: bool,
    verify: bool,
) -> faiss.Index:
    """Shard ``shard_id`` of a version: its segments' codes in one copy of the trained index.

    With ``mmap`` and a single segment holding the shard (a compacted gallery), the segment's
    file is memory-mapped and given the trained quantizer instead: no copy of the codes.
    """
    holding = [s for s in manifest.segments if s.shard_counts[shard_id]]
    files = [(s, s.key(segment_shard_file(shard_id))) for s in holding]
    if verify:
        for segment, key in files:
            verify_key(storage, key, segment.files[segment_shard_file(shard_id)])
    if mmap and len(files) == 1:
        segment, key = files[0]
        index: Any = _read_part(storage, key, manifest, segment.shard_counts[shard_id], mmap=True)
        ivf: Any = faiss.extract_index_ivf(index)
        ivf.own_fields = False
        ivf.quantizer = faiss.extract_index_ivf(trained).quantizer
        index.referenced_objects = [trained]  # the quantizer lives as long as this index
        return index  # type: ignore[no-any-return]
    merged: faiss.Index = faiss.clone_index(trained)
    target: Any = faiss.extract_index_ivf(merged)
    for segment, key in files:
        part = _read_part(storage, key, manifest, segment.shard_counts[shard_id], mmap=False)
        source: Any = faiss.extract_index_ivf(part)
        target.invlists.merge_from(source.invlists, 0)
        target.ntotal += part.ntotal
    merged.ntotal = target.ntotal
    return merged


def _read_part(
    storage: GalleryStorage, key: str, manifest: GalleryManifest, count: int, *, mmap: bool
) -> faiss.Index:
    """One segment's shard file, refused unless it holds what the manifest says."""
    path = str(storage.local_path(key))
    try:
        index = faiss.read_index(path, faiss.IO_FLAG_MMAP) if mmap else faiss.read_index(path)
    except RuntimeError as error:
        raise GalleryError(f"gallery shard file {key} is unreadable") from error
    ivf = faiss.extract_index_ivf(index)
    if (index.d, index.ntotal, ivf.nlist) != (manifest.dimension, count, manifest.nlist):
        raise GalleryError(
            f"gallery shard file {key} holds {index.ntotal} {index.d}-d templates in "
            f"{ivf.nlist} lists; the manifest says {count}, {manifest.dimension}-d, "
            f"{manifest.nlist} lists"
        )
    return index


def open_vectors(
    storage: GalleryStorage, manifest: GalleryManifest, *, verify: bool
) -> np.ndarray[Any, Any] | SegmentVectors:
    """The version's full vectors, row g = gallery id g: one segment's memory map as it is,
    or ``SegmentVectors`` over several. Each file is refused unless its shape and dtype are
    the manifest's."""
    parts = []
    for segment in manifest.segments:
        key = segment.key(SEGMENT_VECTORS)
        if verify:
            verify_key(storage, key, segment.files[SEGMENT_VECTORS])
        try:
            part: np.ndarray[Any, Any] = np.load(storage.local_path(key), mmap_mode="r")
        except (OSError, ValueError) as error:
            raise GalleryError(f"gallery file {key} is unreadable") from error
        expected = (segment.rows, manifest.dimension)
        if part.shape != expected or part.dtype != np.dtype(manifest.vector_dtype):
            raise GalleryError(
                f"gallery file {key} is {part.dtype}{part.shape}, the manifest says "
                f"{manifest.vector_dtype}{expected}"
            )
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.zeros((0, manifest.dimension), dtype=manifest.vector_dtype)
    return SegmentVectors(parts, [s.first_id for s in manifest.segments])


def verify_key(storage: GalleryStorage, key: str, expected: str) -> None:
    """Refuse a corrupt or missing file by name, with what to do."""
    folder, _, name = key.rpartition("/")
    try:
        actual = storage.sha256(key)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise GalleryError(f"gallery file {name} is missing from {folder}") from error
    if actual != expected:
        raise GalleryError(
            f"gallery file {name} in {folder} is corrupt: sha256 {actual[:16]}..., the manifest "
            f"says {expected[:16]}...; restore it from a backup or rebuild the gallery"
        )
