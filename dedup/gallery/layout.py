"""What a gallery looks like on disk: the folder layout, the manifest, and the index recipe.

A gallery root holds immutable segments, immutable version folders that name them, and one
pointer to the published version::

    <root>/
      CURRENT                  the name of the published version folder, replaced atomically
      trained/<token>.faiss    the trained, empty IVF-PQ every shard is a copy of (shared)
      segments/<name>/         one batch as added (or merged by compaction), never modified:
         vectors.npy           full vectors of gallery ids first_id..first_id+rows-1 (exact
                               re-scoring); rows of compacted ids are zeroed
         ids.parquet           those ids -> enrollment id, shard, batch
         shard-00000.faiss     per shard that got some: the trained index without its coarse
                               quantizer, holding this segment's codes (ids = gallery ids)
      versions/v000001/        a published version, never modified after publish
         manifest.json         this module's ``GalleryManifest``: its segments, by name and sha256
         tombstones.parquet    erased ids not yet compacted away
         compacted.parquet     erased ids already compacted away (kept so ids are never reused
                               and exact sweeps skip their zeroed rows)
         ledger.parquet        batches already added, so that re-adding one changes nothing
      versions/.tmp-*/, segments/.tmp-*/   being written (or left by a crash): readers ignore them

An add writes one segment and a new version folder of small files; a version's shard is the
merge of its segments' shard files into a copy of the trained index. Segments and trained
indexes that no remaining version names are deleted by the next writer. The manifest names
every file with its sha256, so a reader can prove it reads what the writer wrote. The
mechanics live beside this module: ``storage`` (the file operations), ``segments`` (segment
entries, their vectors, the merge policy), ``reader`` (open, verify), ``writer`` (build,
add), ``erasure`` (erase, compact, prune) and ``publish`` (drafts, sweeping, the atomic
publish).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from dedup.contracts.schemas import UTC_TS
from dedup.errors import GalleryError
from dedup.gallery.recall_bands import MeasuredRecall
from dedup.gallery.recipes import parse_factory
from dedup.gallery.segments import IDS_SCHEMA as IDS_SCHEMA  # declared with the segments
from dedup.gallery.segments import SegmentEntry, check_segments

# 3: segmented (this module's docstring), each segment with its sorted enrollment keys. Older
# galleries (1: one vectors.npy per version; 2: segments without keys) are refused: rebuild them.
FORMAT_VERSION = 3
METRIC = "inner_product"
VECTOR_DTYPES = ("float16", "float32")

CURRENT_FILE = "CURRENT"
LOCK_FILE = "LOCK"
VERSIONS_DIR = "versions"
TMP_PREFIX = ".tmp-"
MANIFEST_FILE = "manifest.json"
TRAINED_DIR = "trained"
TOMBSTONES_FILE = "tombstones.parquet"
COMPACTED_FILE = "compacted.parquet"
LEDGER_FILE = "ledger.parquet"
# Every file of a version folder but the manifest, each listed in ``manifest.files``.
VERSION_FILES = (TOMBSTONES_FILE, COMPACTED_FILE, LEDGER_FILE)

TOMBSTONES_SCHEMA = pa.schema(
    [
        pa.field("gallery_id", pa.int64(), nullable=False),
        pa.field("erased_at", UTC_TS, nullable=False),
    ]
)
COMPACTED_SCHEMA = pa.schema(
    [
        pa.field("gallery_id", pa.int64(), nullable=False),
        pa.field("erased_at", UTC_TS, nullable=False),
        pa.field("compacted_at", UTC_TS, nullable=False),
    ]
)
LEDGER_SCHEMA = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("first_id", pa.int64(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
    ]
)

_VERSION_NAME = re.compile(r"v(\d{6,})")


def shard_file(shard_id: int) -> str:
    return f"shard-{shard_id:05d}.faiss"


def version_key(name: str, file: str = "") -> str:
    """The storage key of a version folder (or of a file in it)."""
    return f"{VERSIONS_DIR}/{name}/{file}" if file else f"{VERSIONS_DIR}/{name}"


def version_name(version: int) -> str:
    return f"v{version:06d}"


def parse_version_name(name: str) -> int | None:
    """The version number of a published folder name, or None for anything else (tmp folders)."""
    matched = _VERSION_NAME.fullmatch(name)
    return int(matched.group(1)) if matched else None


@dataclass(frozen=True)
class ShardEntry:
    """One shard of a version: ``count`` entries (erased ones included until compaction),
    summed over the version's segments."""

    id: int
    count: int

    @property
    def file(self) -> str:
        """The name of this shard's file in each segment that holds some of it."""
        return shard_file(self.id)


@dataclass(frozen=True)
class PqSpec:
    m: int
    nbits: int


@dataclass(frozen=True)
class GalleryManifest:
    """Everything a reader needs to trust and interpret one published version.

    ``size`` counts live templates (erased ones excluded); ``next_id`` is the next gallery id
    to hand out, so ids are dense ``0..next_id-1`` and never reused, even after compaction.
    ``segments`` tile those ids in order; ``trained`` is the key of the trained index;
    ``files`` maps every file of the version folder but the manifest to its sha256.
    """

    version: int
    model_id: str
    dimension: int
    factory: str
    nlist: int
    pq: PqSpec
    vector_dtype: str
    size: int
    next_id: int
    shard_count: int
    trained: str
    trained_sha256: str
    segments: tuple[SegmentEntry, ...]
    files: Mapping[str, str]
    created_at: datetime
    metric: str = METRIC
    format_version: int = FORMAT_VERSION
    # The index's recall by score band, measured on this version's own templates when the
    # index changed (``dedup.gallery.recall``); None for a gallery too small to measure.
    recall: MeasuredRecall | None = None

    @property
    def version_name(self) -> str:
        return version_name(self.version)

    @property
    def shards(self) -> tuple[ShardEntry, ...]:
        """Each shard with its entry count over every segment."""
        return tuple(
            ShardEntry(shard, sum(s.shard_counts[shard] for s in self.segments))
            for shard in range(self.shard_count)
        )

    def checksums(self) -> dict[str, str]:
        """Every file the version reads, by storage key (root-relative), with its sha256."""
        found = {version_key(self.version_name, n): h for n, h in self.files.items()}
        found[self.trained] = self.trained_sha256
        for segment in self.segments:
            found.update({segment.key(name): h for name, h in segment.files.items()})
        return found

    def to_json(self) -> str:
        document = {
            "format_version": self.format_version,
            "version": self.version,
            "model_id": self.model_id,
            "dimension": self.dimension,
            "factory": self.factory,
            "metric": self.metric,
            "nlist": self.nlist,
            "pq": {"m": self.pq.m, "nbits": self.pq.nbits},
            "vector_dtype": self.vector_dtype,
            "size": self.size,
            "next_id": self.next_id,
            "shard_count": self.shard_count,
            "trained": {"key": self.trained, "sha256": self.trained_sha256},
            "segments": [segment.to_dict() for segment in self.segments],
            "files": dict(sorted(self.files.items())),
            "created_at": self.created_at.isoformat(),
            "recall": None if self.recall is None else self.recall.to_dict(),
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> GalleryManifest:
        """Parse and check a manifest; anything malformed is a ``GalleryError``."""
        try:
            raw = json.loads(text)
            found = int(raw["format_version"])
        except (ValueError, KeyError, TypeError) as error:
            raise GalleryError(f"gallery manifest is malformed: {error!r}") from error
        if found != FORMAT_VERSION:
            raise GalleryError(
                f"gallery format version {found} is not supported (this release reads version "
                f"{FORMAT_VERSION}, segmented with enrollment keys): rebuild the gallery with "
                "`dedup gallery build`"
            )
        try:
            manifest = cls(
                format_version=found,
                version=int(raw["version"]),
                model_id=str(raw["model_id"]),
                dimension=int(raw["dimension"]),
                factory=str(raw["factory"]),
                metric=str(raw["metric"]),
                nlist=int(raw["nlist"]),
                pq=PqSpec(m=int(raw["pq"]["m"]), nbits=int(raw["pq"]["nbits"])),
                vector_dtype=str(raw["vector_dtype"]),
                size=int(raw["size"]),
                next_id=int(raw["next_id"]),
                shard_count=int(raw["shard_count"]),
                trained=str(raw["trained"]["key"]),
                trained_sha256=str(raw["trained"]["sha256"]),
                segments=tuple(SegmentEntry.from_dict(s) for s in raw["segments"]),
                files={str(k): str(v) for k, v in raw["files"].items()},
                created_at=datetime.fromisoformat(raw["created_at"]),
                recall=(
                    None if raw.get("recall") is None else MeasuredRecall.from_dict(raw["recall"])
                ),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise GalleryError(f"gallery manifest is malformed: {error!r}") from error
        manifest.check()
        return manifest

    def check(self) -> None:
        """Refuse a manifest whose fields contradict each other."""
        problems = []
        if self.format_version != FORMAT_VERSION:
            problems.append(f"format version {self.format_version} (expected {FORMAT_VERSION})")
        if self.metric != METRIC:
            problems.append(f"metric {self.metric!r}")
        if self.vector_dtype not in VECTOR_DTYPES:
            problems.append(f"vector dtype {self.vector_dtype!r}")
        if self.created_at.tzinfo is None:
            problems.append("created_at without a time zone")
        spec = parse_factory(self.factory, self.dimension)
        if (spec.nlist, spec.m, spec.nbits) != (self.nlist, self.pq.m, self.pq.nbits):
            problems.append(f"factory {self.factory!r} disagrees with nlist/pq")
        if self.shard_count < 1:
            problems.append("no shard")
        if set(self.files) != set(VERSION_FILES):
            problems.append(f"files {sorted(self.files)} are not {sorted(VERSION_FILES)}")
        if not self.trained.startswith(f"{TRAINED_DIR}/") or ".." in self.trained:
            problems.append(f"trained index {self.trained!r} is not under {TRAINED_DIR}/")
        problems += check_segments(self.segments, self.next_id, self.shard_count)
        if not 0 <= self.size <= sum(s.count for s in self.shards) <= self.next_id:
            problems.append(f"size {self.size} / shard counts / next_id {self.next_id} disagree")
        if problems:
            raise GalleryError("gallery manifest is inconsistent: " + "; ".join(problems))
