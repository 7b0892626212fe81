"""Segments: the immutable pieces a gallery version is made of, and how many to keep.

Each batch added (and the first build) is written once as a segment under
``segments/<name>/``: the full vectors of a contiguous range of gallery ids, their ids rows,
the sorted 64-bit keys of their enrollment ids (``enrollment_keys``: an add checks its batch
against every segment by binary search, without reading the segments' ids), and one FAISS file
per shard that received some of them (the shared trained index, its coarse quantizer left out,
holding only this segment's codes). Versions name their segments, so an add
writes O(batch) bytes and never copies what an older version holds.

``SegmentVectors`` is the full-vector matrix of a version seen through its segments' memory-
mapped files; ``plan_merges`` is the compaction policy that bounds how many segments a
version has.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

SEGMENTS_DIR = "segments"
SEGMENT_VECTORS = "vectors.npy"
SEGMENT_IDS = "ids.parquet"
# The sorted enrollment keys of a segment's ids rows (uint64, one per row of ids.parquet).
SEGMENT_KEYS = "id_keys.npy"
# A segment's ids.parquet: each of its gallery ids -> enrollment id, shard, batch.
IDS_SCHEMA = pa.schema(
    [
        pa.field("gallery_id", pa.int64(), nullable=False),
        pa.field("enrollment_id", pa.string(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
    ]
)
# Compaction merges runs of this many adjacent segments of one size tier (sizes within a
# factor of MERGE_FANOUT), so a template is rewritten about log_8(N / batch) times in its life.
MERGE_FANOUT = 8
# Past this many segments compaction also merges the smallest adjacent pairs.
MAX_SEGMENTS = 48


def segment_shard_file(shard_id: int) -> str:
    return f"shard-{shard_id:05d}.faiss"


def segment_name(first_id: int, token: str) -> str:
    """A segment's folder: its first gallery id, then a random token (a retried write never
    collides with what a crash left)."""
    return f"s{first_id:012d}-{token}"


@dataclass(frozen=True)
class SegmentEntry:
    """One segment as a version manifest names it.

    Rows are gallery ids ``first_id .. first_id + rows - 1`` (compacted ones zeroed);
    ``shard_counts[s]`` entries of them are in shard ``s``; ``files`` maps every file of the
    segment folder to its sha256.
    """

    name: str
    first_id: int
    rows: int
    shard_counts: tuple[int, ...]
    files: Mapping[str, str]

    @property
    def end_id(self) -> int:
        return self.first_id + self.rows

    @property
    def prefix(self) -> str:
        return f"{SEGMENTS_DIR}/{self.name}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "first_id": self.first_id,
            "rows": self.rows,
            "shard_counts": list(self.shard_counts),
            "files": dict(sorted(self.files.items())),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SegmentEntry:
        return cls(
            name=str(raw["name"]),
            first_id=int(raw["first_id"]),
            rows=int(raw["rows"]),
            shard_counts=tuple(int(c) for c in raw["shard_counts"]),
            files={str(k): str(v) for k, v in raw["files"].items()},
        )

    def problems(self, shards: int) -> list[str]:
        """What contradicts itself in this entry (empty when it is sound)."""
        found = []
        expected = {SEGMENT_VECTORS, SEGMENT_IDS, SEGMENT_KEYS} | {
            segment_shard_file(s) for s, count in enumerate(self.shard_counts) if count
        }
        if set(self.files) != expected:
            found.append(f"segment {self.name} lists files {sorted(self.files)}")
        if len(self.shard_counts) != shards or min(self.shard_counts, default=0) < 0:
            found.append(f"segment {self.name} has {len(self.shard_counts)} shard counts")
        if self.rows < 1 or sum(self.shard_counts) > self.rows or "/" in self.name:
            found.append(f"segment {self.name}: {self.rows} rows, {sum(self.shard_counts)} held")
        return found


def enrollment_keys(names: Iterable[str]) -> npt.NDArray[np.uint64]:
    """The 64-bit key of each enrollment id (its first 8 bytes of BLAKE2b), in the given order.

    Keys only narrow a search: two ids can share a key (about once in 10^9 batches of 10 k
    against 10^9 templates), so a key found is confirmed against the ids rows themselves.

    >>> keys = enrollment_keys(["e1", "e2", "e1"])
    >>> keys.dtype, keys[0] == keys[2], keys[0] == keys[1]
    (dtype('uint64'), np.True_, np.False_)
    """
    digests = b"".join(
        # surrogatepass: any str has a key (no stored id holds a lone surrogate: is_utf8)
        hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        for name in names
    )
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def is_utf8(name: str) -> bool:
    """Whether ``name`` can be written as UTF-8 (a lone surrogate cannot), as every stored
    enrollment id is.

    >>> is_utf8("e-001"), is_utf8("e" + chr(0xDCFF))
    (True, False)
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def holds_any(sorted_keys: npt.NDArray[np.uint64], keys: npt.NDArray[np.uint64]) -> bool:
    """Whether any of ``keys`` is in ``sorted_keys`` (ascending): a binary search per key, so
    a memory-mapped ``sorted_keys`` is read only where the searches land.

    >>> holds_any(np.array([3, 9, 12], np.uint64), np.array([4, 12], np.uint64))
    True
    >>> holds_any(np.array([3, 9, 12], np.uint64), np.array([13, 0], np.uint64))
    False
    """
    if not len(sorted_keys) or not len(keys):
        return False
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return bool(np.any(sorted_keys[at] == keys))


def check_segments(segments: Sequence[SegmentEntry], next_id: int, shards: int) -> list[str]:
    """Segments must tile the gallery ids ``0 .. next_id - 1`` in order, without gaps."""
    found = [problem for segment in segments for problem in segment.problems(shards)]
    end = 0
    for segment in segments:
        if segment.first_id != end:
            found.append(f"segment {segment.name} starts at {segment.first_id}, not {end}")
        end = segment.end_id
    if end != next_id:
        found.append(f"segments cover ids up to {end}, next_id is {next_id}")
    if len({s.name for s in segments}) != len(segments):
        found.append("a segment is named twice")
    return found


class SegmentVectors:
    """The full vectors of a version, row g = gallery id g, over its segments' files.

    Supports what the engines need: ``vectors[ids]`` for an integer array (exact re-scoring),
    ``vectors[start:stop]`` (the exact sweep's tiles) and ``vectors[g]``; a gallery id is
    mapped to its (segment, row) by binary search over the segments' first ids.
    """

    def __init__(self, parts: Sequence[np.ndarray[Any, Any]], first_ids: Sequence[int]) -> None:
        if not parts:
            raise ValueError("SegmentVectors needs at least one segment")
        self.parts = list(parts)
        self.starts = np.asarray(first_ids, dtype=np.int64)
        self.ends = self.starts + np.array([len(p) for p in parts], dtype=np.int64)
        self.dtype = self.parts[0].dtype
        self.shape = (int(self.ends[-1]), int(self.parts[0].shape[1]))
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray[Any, Any]:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                return self.rows(np.arange(start, stop, step, dtype=np.int64))
            return self._range(start, stop)
        if isinstance(key, int | np.integer):
            row = int(key) + self.shape[0] if key < 0 else int(key)
            one: np.ndarray[Any, Any] = self.rows(np.array([row], dtype=np.int64))[0]
            return one
        return self.rows(np.asarray(key, dtype=np.int64))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray[Any, Any]:
        whole = self._range(0, self.shape[0])
        return whole if dtype is None else np.asarray(whole, dtype=dtype)

    def rows(self, ids: npt.NDArray[np.int64]) -> np.ndarray[Any, Any]:
        """Rows of the given gallery ids (any shape of ids; the result adds the dimension)."""
        flat = ids.ravel()
        if flat.size and (flat.min() < 0 or flat.max() >= self.shape[0]):
            raise IndexError(f"gallery ids outside 0..{self.shape[0] - 1}")
        out = np.empty((flat.size, self.shape[1]), dtype=self.dtype)
        part = np.searchsorted(self.starts, flat, side="right") - 1
        for number in np.unique(part):
            chosen = part == number
            out[chosen] = self.parts[number][flat[chosen] - self.starts[number]]
        return out.reshape(*ids.shape, self.shape[1])

    def _range(self, start: int, stop: int) -> np.ndarray[Any, Any]:
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        last = int(np.searchsorted(self.starts, max(start, stop - 1), side="right")) - 1
        if stop <= start:
            return np.empty((0, self.shape[1]), dtype=self.dtype)
        if first == last:  # inside one segment: a view of its memory map, no copy
            offset = int(self.starts[first])
            return self.parts[first][start - offset : stop - offset]
        pieces = []
        for number in range(first, last + 1):
            offset = int(self.starts[number])
            lo, hi = max(start, offset), min(stop, int(self.ends[number]))
            pieces.append(self.parts[number][lo - offset : hi - offset])
        return np.concatenate(pieces)


def tier(rows: int) -> int:
    """The size tier of a segment of ``rows`` ids: sizes within a factor of MERGE_FANOUT.

    >>> tier(1), tier(7), tier(8), tier(10_000), tier(1_000_000)
    (0, 0, 1, 4, 6)
    """
    return math.floor(math.log(max(rows, 1), MERGE_FANOUT) + 1e-9)


def plan_merges(rows: Sequence[int]) -> list[range]:
    """Runs of adjacent segments (by index) that compaction merges into one each.

    Tiered, as log-structured stores do: a run of MERGE_FANOUT or more adjacent segments of one
    tier becomes one segment of the next tier, repeatedly; past MAX_SEGMENTS the smallest
    adjacent pair is merged too. With nightly batches of B ids this keeps at most about
    ``(MERGE_FANOUT - 1) * log_8(N / B)`` segments, and each template is rewritten once per
    tier it climbs.

    >>> plan_merges([1000] + [10] * 8)
    [range(1, 9)]
    >>> plan_merges([1000, 10, 10])
    []
    """
    groups = [(i, i + 1, r) for i, r in enumerate(rows)]
    changed = True
    while changed:
        changed = False
        at = 0
        while at < len(groups):
            run_end = at
            while run_end < len(groups) and tier(groups[run_end][2]) == tier(groups[at][2]):
                run_end += 1
            if run_end - at >= MERGE_FANOUT:
                total = sum(g[2] for g in groups[at:run_end])
                merged = (groups[at][0], groups[run_end - 1][1], total)
                groups[at:run_end] = [merged]
                changed = True
            at += 1
    while len(groups) > MAX_SEGMENTS:
        pair = min(range(len(groups) - 1), key=lambda i: groups[i][2] + groups[i + 1][2])
        left, right = groups[pair], groups[pair + 1]
        groups[pair : pair + 2] = [(left[0], right[1], left[2] + right[2])]
    return [range(start, end) for start, end, _ in groups if end - start > 1]
