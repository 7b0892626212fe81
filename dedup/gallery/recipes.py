"""Index recipes: the FAISS factory strings a gallery's shards may use, and what each costs.

Every recipe is an inverted file (``IVF{nlist}``) so that all shards share one trained coarse
quantizer and take ``add_with_ids`` and ``remove_ids``. What is stored in the lists varies:

- ``PQ{m}x4fs``: fast-scan product quantization, 4-bit codes scanned with SIMD lookups, encoding
  the vectors themselves; ``PQ{m}x4fsr`` encodes each vector's residual from its list's centroid
  instead, which spends the code on what tells people apart rather than on the direction every
  face shares;
- ``PQ{m}`` (8-bit codes, residual), optionally behind an ``OPQ{m}`` rotation;
- ``RaBitQfs``: fast-scan RaBitQ, one bit a dimension plus per-vector factors, residual;
- ``SQ8`` (one byte a dimension) and ``Flat`` (the float32 vector), for galleries small enough
  that their lists fit the memory budget anyway.

Which one a gallery gets is measured, not assumed: ``dedup.gallery.recipe_choice`` tries the
candidates (``candidate_factories``) that fit the budget on a sample of the gallery and keeps
the fastest that reaches the target recall.

>>> spec = parse_factory("IVF4096,PQ32", 128)
>>> spec.nlist, spec.codec, spec.m, spec.nbits, spec.fast_scan, spec.residual
(4096, 'pq', 32, 8, False, True)
>>> parse_factory("IVF12288,PQ64x4fs", 128).code_bytes
32
>>> parse_factory("IVF1024,RaBitQfs", 512).code_bytes
72
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from dedup.errors import GalleryError

Codec = Literal["pq", "rabitq", "sq8", "flat"]

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
# The inverted lists one shard may take in memory: 100 M templates at 40 bytes.
SHARD_INDEX_BYTES = SHARD_TEMPLATES * (MAX_CODE_BYTES + ID_BYTES)
# Average entries per inverted list and shard that the default nlist keeps at least, so the
# padded last block of a fast-scan list costs at most 16 / 80 of the code bytes.
MIN_LIST_OCCUPANCY = 80
# RaBitQ keeps two float32 factors beside each vector's sign bits.
RABITQ_FACTOR_BYTES = 8

_FACTORY = re.compile(
    r"(?P<opq>OPQ(?P<opq_m>\d+),)?IVF(?P<nlist>\d+),"
    r"(?:PQ(?P<m>\d+)(?:x(?P<nbits>\d+)(?P<fs>fs(?P<r>r)?)?)?(?:np)?"
    r"|(?P<rabitq>RaBitQ(?P<rabitq_fs>fs)?)|(?P<sq8>SQ8)|(?P<flat>Flat))"
)


@dataclass(frozen=True)
class IndexSpec:
    """The parameters of a recipe that the storage layer and the cost model rely on."""

    nlist: int
    codec: Codec
    m: int = 0  # PQ sub-quantizers (0 for the other codecs)
    nbits: int = 8  # bits per PQ code (0 for the other codecs)
    fast_scan: bool = False  # codes in SIMD blocks of 32 (PQ x4fs, RaBitQfs)
    residual: bool = False  # codes of the residual from the list's centroid
    opq: bool = False  # an OPQ rotation before the inverted file
    dimension: int = 0

    @property
    def code_bytes(self) -> int:
        if self.codec == "pq":
            return (self.m * self.nbits + 7) // 8
        if self.codec == "rabitq":
            return (self.dimension + 7) // 8 + RABITQ_FACTOR_BYTES
        return self.dimension * (1 if self.codec == "sq8" else 4)

    @property
    def bytes_per_template(self) -> int:
        """Code plus id: what one template costs in a shard's lists, before block padding."""
        return self.code_bytes + ID_BYTES

    def list_bytes(self, entries: int) -> int:
        """Bytes one inverted list of ``entries`` codes takes: codes (whole blocks of
        ``FAST_SCAN_BLOCK`` under fast scan) plus one int64 id each."""
        codes = -(-entries // FAST_SCAN_BLOCK) * FAST_SCAN_BLOCK if self.fast_scan else entries
        return codes * self.code_bytes + entries * ID_BYTES


def parse_factory(factory: str, dimension: int) -> IndexSpec:
    """Read a FAISS factory string; only the inverted-file recipes above are accepted.

    >>> parse_factory("OPQ32,IVF256,PQ32", 128).opq
    True
    >>> parse_factory("IVF256,PQ64x4fsr", 128).residual
    True
    """
    matched = _FACTORY.fullmatch(factory.replace(" ", ""))
    if not matched:
        raise GalleryError(
            f"index factory {factory!r} is not of the form '[OPQ<m>,]IVF<nlist>,<codes>' with "
            "codes PQ<m>[x<nbits>[fs[r]]], RaBitQ[fs], SQ8 or Flat"
        )
    nlist = int(matched["nlist"])
    if matched["m"] is not None:
        m, nbits = int(matched["m"]), int(matched["nbits"] or 8)
        fast_scan = matched["fs"] is not None
        spec = IndexSpec(
            nlist,
            "pq",
            m,
            nbits,
            fast_scan=fast_scan,
            # FAISS's PQ encodes residuals, its fast-scan PQ only with the ``r`` suffix.
            residual=(matched["r"] is not None) if fast_scan else True,
            opq=matched["opq"] is not None,
            dimension=dimension,
        )
        if m < 1 or not 1 <= nbits <= 16:
            raise GalleryError(f"index factory {factory!r} has an empty or out-of-range parameter")
        if fast_scan and nbits != 4:
            raise GalleryError(f"index factory {factory!r}: fast scan needs 4-bit codes (x4fs)")
        if dimension % m:
            raise GalleryError(f"PQ{m} does not divide the template dimension {dimension}")
    else:
        codec: Codec = "rabitq" if matched["rabitq"] else "sq8" if matched["sq8"] else "flat"
        spec = IndexSpec(
            nlist,
            codec,
            0,
            0,
            fast_scan=matched["rabitq_fs"] is not None,
            residual=codec in ("rabitq", "sq8"),
            opq=matched["opq"] is not None,
            dimension=dimension,
        )
    if spec.opq and (spec.codec != "pq" or int(matched["opq_m"]) != spec.m):
        raise GalleryError(f"index factory {factory!r}: OPQ<m> must precede PQ<m> of the same m")
    if nlist < 1 or dimension < 1:
        raise GalleryError(f"index factory {factory!r} has an empty or out-of-range parameter")
    return spec


def default_shards(n: int) -> int:
    """Shards for ``n`` templates: one per ``SHARD_TEMPLATES``, at least one.

    >>> default_shards(1_000_000), default_shards(1_000_000_000)
    (1, 10)
    """
    return max(1, -(-n // SHARD_TEMPLATES))


def default_nlist(n: int, shards: int = 1) -> int:
    """``16 * sqrt(n)`` lists, but at most ``n / (80 * shards)`` so that each shard's lists
    average 80 entries or more and the padding of their last fast-scan block costs at most a
    fifth of the code bytes; rounded down to a multiple of 1024 from 1024 up; at least 1.

    On the calibrated templates the number of lists a probe must visit for 99.5% recall of its
    true match stayed near 300 to 450 whether nlist was 4,096 or 16,384, so finer lists scan a
    smaller share of the gallery; ``16 * sqrt(n)`` balances that against the coarse quantizer's
    ``nlist * d`` per probe.

    >>> default_nlist(1_000_000), default_nlist(1_000_000_000, shards=10)
    (12288, 505856)
    """
    if n < 1 or shards < 1:
        raise GalleryError(f"no index recipe for {n} templates in {shards} shards")
    target = min(16 * math.sqrt(n), n / (MIN_LIST_OCCUPANCY * shards))
    nlist = int(target) // 1024 * 1024 if target >= 1024 else int(target)
    return max(1, nlist)


def pq_subquantizers(dim: int) -> int:
    """``m`` of the 4-bit recipes: the largest divisor of ``dim`` that is at most
    ``min(64, dim // 2)``, 32 code bytes for 128-d and for 512-d.

    >>> pq_subquantizers(128), pq_subquantizers(512), pq_subquantizers(100)
    (64, 64, 50)
    """
    cap = max(1, min(2 * MAX_CODE_BYTES, dim // 2))
    return max(k for k in range(1, cap + 1) if dim % k == 0)


def default_factory(n: int, dim: int, shards: int = 1) -> str:
    """The recipe a gallery gets when none is measured (a gallery too small to measure on):
    residual fast-scan PQ, ``m = pq_subquantizers(dim)``, ``nlist = default_nlist(n, shards)``.

    >>> default_factory(1_000_000, 128)
    'IVF12288,PQ64x4fsr'
    """
    if dim < 1:
        raise GalleryError(f"no index recipe for templates of dimension {dim}")
    return f"IVF{default_nlist(n, shards)},PQ{pq_subquantizers(dim)}x4fsr"


def candidate_factories(n: int, dim: int, shards: int = 1) -> list[str]:
    """The recipes worth trying for ``n`` templates of dimension ``dim``, cheapest first, that
    fit the memory budget: a shard's lists take at most ``SHARD_INDEX_BYTES``, and never more
    than ``MAX_INDEX_BYTES_PER_TEMPLATE`` a template once a shard is large.

    >>> candidate_factories(200_000, 128)[:3]
    ['IVF2048,PQ64x4fs', 'IVF2048,PQ64x4fsr', 'IVF2048,PQ32']
    >>> candidate_factories(1_000_000_000, 512, shards=10)
    ['IVF505856,PQ64x4fs', 'IVF505856,PQ64x4fsr', 'IVF505856,PQ32']
    """
    nlist = default_nlist(n, shards)
    m = pq_subquantizers(dim)
    ivf = f"IVF{nlist}"
    # An OPQ rotation (``OPQ{m},...``) is accepted but not tried by default: training it took
    # 197 s on 30 k templates on 2 cores, more than every other candidate together.
    recipes = [f"{ivf},PQ{m}x4fs", f"{ivf},PQ{m}x4fsr"]
    eight_bit = max(k for k in range(1, MAX_CODE_BYTES + 1) if dim % k == 0)
    recipes += [f"{ivf},PQ{eight_bit}", f"{ivf},RaBitQfs", f"{ivf},SQ8", f"{ivf},Flat"]
    per_shard = -(-n // shards)
    budget = max(MAX_INDEX_BYTES_PER_TEMPLATE, SHARD_INDEX_BYTES // per_shard)
    return [r for r in recipes if parse_factory(r, dim).bytes_per_template <= budget]


def default_train_size(n: int, spec: IndexSpec) -> int:
    """How many templates to train on: 64 per centroid of the larger k-means (coarse lists or
    a PQ codebook), at most ``n``."""
    codebook = (1 << spec.nbits) if spec.codec == "pq" else 0
    return min(n, TRAIN_POINTS_PER_CENTROID * max(spec.nlist, codebook))


def index_bytes_per_template(factory: str, dim: int) -> int:
    """Bytes one template costs in a shard's inverted lists: its code plus its int64 id,
    before fast scan pads each list's last block (``Gallery.index_bytes`` counts that).

    >>> index_bytes_per_template("IVF4096,PQ32", 128)
    40
    """
    return parse_factory(factory, dim).bytes_per_template
