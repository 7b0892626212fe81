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
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from dedup.contracts.schemas import UTC_TS
from dedup.errors import GalleryError
from dedup.gallery.segments import IDS_SCHEMA as IDS_SCHEMA  # declared with the segments
from dedup.gallery.segments import SegmentEntry, check_segments

# 2: segmented (this module's docstring). Version 1 galleries (one vectors.npy per version)
# are refused: rebuild them.
FORMAT_VERSION = 2
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

# FAISS stores one int64 id beside every code in an inverted list; fast-scan lists hold their
# codes in blocks of 32, so a list's last block is padded.
ID_BYTES = 8
FAST_SCAN_BLOCK = 32
# The code budget that keeps a billion templates in memory: 32 code bytes + 8 id bytes = 40.
MAX_CODE_BYTES = 32
MAX_INDEX_BYTES_PER_TEMPLATE = 48
# FAISS k-means warns below 39 training points per centroid and learns little beyond ~256.
TRAIN_POINTS_PER_CENTROID = 64
# Templates per shard: a shard of 100 M holds 4 GB of codes, one large node or one GPU.
SHARD_TEMPLATES = 100_000_000
# Average entries per inverted list and shard that the default recipe keeps at least, so the
# padded last block of a fast-scan list costs at most 16 / 80 of the code bytes.
MIN_LIST_OCCUPANCY = 80

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
_FACTORY = re.compile(r"IVF(?P<nlist>\d+),PQ(?P<m>\d+)(?:x(?P<nbits>\d+)(?P<fs>fs)?)?(?:np)?")


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
class IvfPqSpec:
    """The parameters of an ``IVF{nlist},PQ{m}x{nbits}`` index that the storage layer relies on."""

    nlist: int
    m: int
    nbits: int = 8
    # FAISS "fast scan": 4-bit codes laid out in blocks of 32 and scanned with SIMD lookups.
    fast_scan: bool = False

    @property
    def code_bytes(self) -> int:
        return (self.m * self.nbits + 7) // 8

    def list_bytes(self, entries: int) -> int:
        """Bytes one inverted list of ``entries`` codes takes: codes (whole blocks of
        ``FAST_SCAN_BLOCK`` under fast scan) plus one int64 id each."""
        codes = -(-entries // FAST_SCAN_BLOCK) * FAST_SCAN_BLOCK if self.fast_scan else entries
        return codes * self.code_bytes + entries * ID_BYTES


def parse_factory(factory: str, dimension: int | None = None) -> IvfPqSpec:
    """Read a FAISS factory string; only IVF-PQ, plain or fast-scan, is accepted.

    Shards must be IVF-PQ so that every shard shares the trained quantizers and takes
    ``add_with_ids`` and ``remove_ids``; other recipes are refused. Fast scan (``x4fs``) needs
    4-bit codes.

    >>> parse_factory("IVF4096,PQ32", 128)
    IvfPqSpec(nlist=4096, m=32, nbits=8, fast_scan=False)
    >>> parse_factory("IVF12288,PQ64x4fs", 128)
    IvfPqSpec(nlist=12288, m=64, nbits=4, fast_scan=True)
    """
    matched = _FACTORY.fullmatch(factory.replace(" ", ""))
    if not matched:
        raise GalleryError(
            f"index factory {factory!r} is not of the form 'IVF<nlist>,PQ<m>[x<nbits>[fs]][np]'"
        )
    spec = IvfPqSpec(
        int(matched["nlist"]),
        int(matched["m"]),
        int(matched["nbits"] or 8),
        fast_scan=matched["fs"] is not None,
    )
    if spec.nlist < 1 or spec.m < 1 or not 1 <= spec.nbits <= 16:
        raise GalleryError(f"index factory {factory!r} has an empty or out-of-range parameter")
    if spec.fast_scan and spec.nbits != 4:
        raise GalleryError(f"index factory {factory!r}: fast scan needs 4-bit codes (x4fs)")
    if dimension is not None and dimension % spec.m:
        raise GalleryError(f"PQ{spec.m} does not divide the template dimension {dimension}")
    return spec


def default_shards(n: int) -> int:
    """Shards for ``n`` templates: one per ``SHARD_TEMPLATES``, at least one.

    >>> default_shards(1_000_000), default_shards(1_000_000_000)
    (1, 10)
    """
    return max(1, -(-n // SHARD_TEMPLATES))


def default_factory(n: int, dim: int, shards: int = 1) -> str:
    """The IVF-PQ recipe for ``n`` templates of dimension ``dim`` split over ``shards``.

    - Codes: fast-scan PQ with 4-bit codes, ``m`` the largest divisor of ``dim`` that is at most
      ``min(64, dim // 2)``: 32 code bytes for 128-d (``PQ64x4fs``) and for 512-d. Fast scan
      reads a code several times faster than 8-bit PQ (``docs/benchmarks.md``), and 64 4-bit
      sub-quantizers rank as well as 32 8-bit ones in the same bytes; ``PQ32x4fs`` (16 bytes)
      was measured to lose planted duplicates from its shortlist.
    - nlist: ``16 * sqrt(n)``, but at most ``n / (80 * shards)`` so that each shard's lists
      average 80 entries or more and the padding of their last fast-scan block costs at most a
      fifth of the code bytes; rounded down to a multiple of 1024 from 1024 up; at least 1.
      On the calibrated templates the number of lists a probe must visit for 99.5% recall of
      its true match stayed near 300 to 450 whether nlist was 4,096 or 16,384, so finer lists
      scan a smaller share of the gallery; ``16 * sqrt(n)`` balances that against the coarse
      quantizer's ``nlist * d`` per probe.

    >>> default_factory(1_000_000, 128)
    'IVF12288,PQ64x4fs'
    >>> default_factory(1_000_000_000, 128, shards=10)
    'IVF505856,PQ64x4fs'
    """
    if n < 1 or dim < 1 or shards < 1:
        raise GalleryError(f"no index recipe for {n} templates of dimension {dim} in {shards}")
    target = min(16 * math.sqrt(n), n / (MIN_LIST_OCCUPANCY * shards))
    nlist = int(target) // 1024 * 1024 if target >= 1024 else int(target)
    cap = max(1, min(2 * MAX_CODE_BYTES, dim // 2))
    m = max(k for k in range(1, cap + 1) if dim % k == 0)
    return f"IVF{max(1, nlist)},PQ{m}x4fs"


def default_train_size(n: int, spec: IvfPqSpec) -> int:
    """How many templates to train on: 64 per centroid of the larger k-means, at most ``n``."""
    return min(n, TRAIN_POINTS_PER_CENTROID * max(spec.nlist, (1 << spec.nbits)))


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
                f"{FORMAT_VERSION}, segmented): rebuild the gallery with `dedup gallery build`"
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


def index_bytes_per_template(manifest_or_factory: GalleryManifest | str, dim: int) -> int:
    """Bytes one template costs in a shard's inverted lists: its PQ code plus its int64 id,
    before fast scan pads each list's last block (``Gallery.index_bytes`` counts that).

    The coarse quantizer and PQ tables are shared and do not grow with the gallery, so this is
    the number that decides how many templates a node holds (``IVF131072,PQ32``: 40 bytes).

    >>> index_bytes_per_template("IVF4096,PQ32", 128)
    40
    """
    factory = (
        manifest_or_factory.factory
        if isinstance(manifest_or_factory, GalleryManifest)
        else manifest_or_factory
    )
    return parse_factory(factory, dim).code_bytes + ID_BYTES
