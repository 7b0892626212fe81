"""What a gallery looks like on disk: the folder layout, the manifest, and the index recipe.

A gallery root holds immutable version folders and one pointer to the published one::

    <root>/
      CURRENT                  the name of the published version folder, replaced atomically
      versions/v000001/        a published version, never modified after publish
         manifest.json         this module's ``GalleryManifest``
         trained.faiss         the trained, empty IVF-PQ index every shard is a copy of
         shard-00000.faiss     a shard: the trained index holding some vectors, ids = gallery ids
         vectors.npy           full vectors, row g = gallery id g (exact re-scoring)
         ids.parquet           gallery id -> enrollment id, shard, batch
         tombstones.parquet    erased ids not yet compacted away
         compacted.parquet     erased ids already compacted away (kept so ids are never reused
                               and exact sweeps over vectors.npy skip their zeroed rows)
         ledger.parquet        batches already added, so that re-adding one changes nothing
      versions/.tmp-*/         a version being written (or left by a crash): readers ignore it

The manifest names every file with its sha256, so a reader can prove it reads what the writer
wrote. The storage mechanics live beside this module: ``reader`` (open, verify), ``writer``
(build, add), ``erasure`` (erase, compact, prune) and ``publish`` (drafts, hard links, the
atomic publish).
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

FORMAT_VERSION = 1
METRIC = "inner_product"
VECTOR_DTYPES = ("float16", "float32")

CURRENT_FILE = "CURRENT"
LOCK_FILE = "LOCK"
VERSIONS_DIR = "versions"
TMP_PREFIX = ".tmp-"
MANIFEST_FILE = "manifest.json"
TRAINED_FILE = "trained.faiss"
VECTORS_FILE = "vectors.npy"
IDS_FILE = "ids.parquet"
TOMBSTONES_FILE = "tombstones.parquet"
COMPACTED_FILE = "compacted.parquet"
LEDGER_FILE = "ledger.parquet"
# Every file of a version but the manifest and the shards, each listed in ``manifest.files``.
VERSION_FILES = (TRAINED_FILE, VECTORS_FILE, IDS_FILE, TOMBSTONES_FILE, COMPACTED_FILE, LEDGER_FILE)

IDS_SCHEMA = pa.schema(
    [
        pa.field("gallery_id", pa.int64(), nullable=False),
        pa.field("enrollment_id", pa.string(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
    ]
)
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


def version_name(version: int) -> str:
    return f"v{version:06d}"


def parse_version_name(name: str) -> int | None:
    """The version number of a published folder name, or None for anything else (tmp folders)."""
    matched = _VERSION_NAME.fullmatch(name)
    return int(matched.group(1)) if matched else None


@dataclass(frozen=True)
class ShardEntry:
    """One shard file of a version: ``count`` vectors, ids = gallery ids."""

    id: int
    file: str
    count: int
    sha256: str


@dataclass(frozen=True)
class PqSpec:
    m: int
    nbits: int


@dataclass(frozen=True)
class GalleryManifest:
    """Everything a reader needs to trust and interpret one published version.

    ``size`` counts live templates (erased ones excluded); ``next_id`` is the next gallery id
    to hand out, so ids are dense ``0..next_id-1`` and never reused, even after compaction.
    ``files`` maps every file but the manifest and the shards to its sha256.
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
    shards: tuple[ShardEntry, ...]
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

    def checksums(self) -> dict[str, str]:
        """Every file of the version (shards included) with its sha256."""
        return {**self.files, **{shard.file: shard.sha256 for shard in self.shards}}

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
            "shards": [
                {"id": s.id, "file": s.file, "count": s.count, "sha256": s.sha256}
                for s in self.shards
            ],
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
            manifest = cls(
                format_version=int(raw["format_version"]),
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
                shards=tuple(
                    ShardEntry(int(s["id"]), str(s["file"]), int(s["count"]), str(s["sha256"]))
                    for s in raw["shards"]
                ),
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
        if [s.id for s in self.shards] != list(range(len(self.shards))) or not self.shards:
            problems.append("shard ids are not 0..n-1")
        if set(self.files) != set(VERSION_FILES):
            problems.append(f"files {sorted(self.files)} are not {sorted(VERSION_FILES)}")
        if any(s.file != shard_file(s.id) for s in self.shards):
            problems.append("a shard file is misnamed")
        if not 0 <= self.size <= sum(s.count for s in self.shards) <= self.next_id:
            problems.append(f"size {self.size} / shard counts / next_id {self.next_id} disagree")
        if problems:
            raise GalleryError("gallery manifest is inconsistent: " + "; ".join(problems))
