"""The gallery's storage layer on a small synthetic gallery: 4,000 random unit templates of
dimension 32 in ``IVF16,PQ8``, built once per module and copied for each test that changes it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dedup.atomic_files import sha256_file
from dedup.errors import GalleryError
from dedup.gallery.erasure import compact, erase, prune_versions
from dedup.gallery.layout import (
    CURRENT_FILE,
    MANIFEST_FILE,
    VERSIONS_DIR,
    GalleryManifest,
)
from dedup.gallery.reader import Gallery, open_gallery, open_shard, verify_gallery
from dedup.gallery.recipes import (
    candidate_factories,
    default_factory,
    index_bytes_per_template,
    parse_factory,
)
from dedup.gallery.segments import SEGMENTS_DIR, SegmentVectors, enrollment_keys, holds_any
from dedup.gallery.writer import add_batch, build_gallery

N, DIM, SHARDS, FACTORY, NLIST = 4000, 32, 4, "IVF16,PQ8", 16
MODEL = "synthetic-v1"


def unit_vectors(n: int, seed: int, dim: int = DIM) -> npt.NDArray[np.float32]:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    unit: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


def search_all(gallery: Gallery, queries: npt.NDArray[np.float32], k: int) -> list[set[int]]:
    """The ids each query finds in any shard, probing every list (exhaustive over the codes)."""
    found: list[set[int]] = [set() for _ in queries]
    for _, index in gallery.shards:
        faiss.extract_index_ivf(index).nprobe = gallery.manifest.nlist
        _, ids = index.search(queries, k)
        for row, hits in zip(found, ids, strict=True):
            row.update(int(i) for i in hits if i >= 0)
    return found


def ids_in_lists(index: faiss.Index) -> set[int]:
    """Every id stored in a shard's inverted lists."""
    invlists = faiss.extract_index_ivf(index).invlists
    assert invlists is not None
    stored: set[int] = set()
    for list_no in range(invlists.nlist):
        size = invlists.list_size(list_no)
        if size:
            stored.update(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).tolist())
    return stored


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def vectors() -> npt.NDArray[np.float32]:
    return unit_vectors(N, seed=1)


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
    vectors: npt.NDArray[np.float32],
    one_faiss_thread: None,
) -> Path:
    root = tmp_path_factory.mktemp("built") / "gallery"
    build_gallery(
        root, names("e", N), vectors, model_id=MODEL, batch_id="night-1", shards=SHARDS,
        factory=FACTORY,
    )  # fmt: skip
    return root


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built gallery, for a test that changes it."""
    return Path(shutil.copytree(built, tmp_path / "gallery"))


# ---------------------------------------------------------------------------------- build, open


def test_build_then_open_gives_sizes_and_balanced_shards(built: Path) -> None:
    gallery = open_gallery(built)
    manifest = gallery.manifest
    counts = [s.count for s in manifest.shards]
    assert (manifest.version, manifest.size, manifest.next_id, gallery.size) == (1, N, N, N)
    assert sum(counts) == N and max(counts) - min(counts) <= 1
    assert [index.ntotal for _, index in gallery.shards] == counts
    assert (manifest.nlist, manifest.pq.m, manifest.pq.nbits) == (NLIST, 8, 8)
    assert (gallery.model_id, gallery.dimension) == (MODEL, DIM)
    assert gallery.vectors.shape == (N, DIM) and gallery.vectors.dtype == np.float16
    assert isinstance(gallery.vectors, np.memmap)
    assert gallery.ids_table().num_rows == N and gallery.tombstones.size == 0
    assert gallery.enrollment_id(17) == "e00017"
    assert gallery.gallery_ids(["e00042", "nobody"]).tolist() == [42, -1]
    asked = np.array([[17, -1], [N - 1, N]])
    assert gallery.enrollment_ids(asked).tolist() == [["e00017", None], [f"e{N - 1:05d}", None]]
    assert gallery.is_live(np.array([-1, 0, N - 1, N])).tolist() == [False, True, True, False]


def test_every_sampled_template_is_found_by_its_own_vector(
    built: Path, vectors: npt.NDArray[np.float32]
) -> None:
    gallery = open_gallery(built)
    sample = np.random.default_rng(2).choice(N, size=200, replace=False)
    found = search_all(gallery, vectors[sample], k=10)
    assert all(int(g) in hits for g, hits in zip(sample, found, strict=True))
    # Re-scored exactly with the stored vectors, the best candidate is the template itself.
    for g, hits in zip(sample, found, strict=True):
        candidates = np.array(sorted(hits))
        scores = gallery.vectors[candidates].astype(np.float32) @ vectors[g]
        assert candidates[np.argmax(scores)] == g


def test_manifest_round_trips_and_checksums_match_the_files(built: Path) -> None:
    gallery = open_gallery(built)
    manifest = gallery.manifest
    assert GalleryManifest.from_json(manifest.to_json()) == manifest
    on_disk = (gallery.path / MANIFEST_FILE).read_text(encoding="utf-8")
    assert GalleryManifest.from_json(on_disk) == manifest
    assert {key: sha256_file(built / key) for key in manifest.checksums()} == dict(
        manifest.checksums()
    )
    assert (built / CURRENT_FILE).read_text(encoding="utf-8").strip() == "v000001"
    assert gallery.path == built / VERSIONS_DIR / "v000001"
    assert verify_gallery(built) == manifest
    assert manifest.created_at.utcoffset() is not None


def test_mmap_open_gives_the_same_search_results(
    built: Path, vectors: npt.NDArray[np.float32]
) -> None:
    queries = vectors[:50]
    results = []
    for gallery in (open_gallery(built), open_gallery(built, mmap=True)):
        per_shard = []
        for _, index in gallery.shards:
            faiss.extract_index_ivf(index).nprobe = 4
            per_shard.append(index.search(queries, 5))
        results.append(per_shard)
    for (d_ram, i_ram), (d_map, i_map) in zip(*results, strict=True):
        np.testing.assert_array_equal(i_ram, i_map)
        np.testing.assert_array_equal(d_ram, d_map)


# ---------------------------------------------------------------------------------- recipes


def test_default_factory_follows_the_documented_rule() -> None:
    assert default_factory(1_000_000, 128) == "IVF12288,PQ64x4fsr"  # 16 * sqrt(n) = 16,000
    assert default_factory(10_000_000, 128) == "IVF50176,PQ64x4fsr"
    assert default_factory(1_000_000, 128, shards=4) == "IVF3072,PQ64x4fsr"  # n / (80 * 4)
    assert default_factory(1_000_000, 512) == "IVF12288,PQ64x4fsr"
    assert default_factory(N, DIM) == "IVF50,PQ16x4fsr"  # 4,000 / 80
    for n in (1, 100, 5_000, 10**6, 10**9):
        for shards in (1, 4, 10):
            spec = parse_factory(default_factory(n, 128, shards), 128)
            assert spec.fast_scan and spec.residual and spec.code_bytes == 32
            assert spec.nlist == 1 or n / (shards * spec.nlist) >= 80


def test_candidates_fit_the_memory_budget_and_every_one_builds() -> None:
    small = candidate_factories(200_000, 128)
    assert {"IVF2048,PQ64x4fs", "IVF2048,PQ64x4fsr", "IVF2048,SQ8", "IVF2048,Flat"} <= set(small)
    assert "IVF2048,PQ32" in small and "IVF2048,RaBitQfs" in small
    assert parse_factory("OPQ64,IVF2048,PQ64x4fsr", 128).opq  # accepted, not tried by default
    # A billion templates in ten shards: 48 bytes a template at most, so no SQ8 or Flat.
    large = candidate_factories(10**9, 128, shards=10)
    assert all(parse_factory(f, 128).bytes_per_template <= 48 for f in large)
    assert not any(f.endswith(("SQ8", "Flat")) for f in large) and len(large) >= 3
    for factory in candidate_factories(40_000, DIM):
        spec = parse_factory(factory, DIM)
        index = faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT)
        assert faiss.extract_index_ivf(index).nlist == spec.nlist
        # The code size the budget counts is the one FAISS stores.
        assert faiss.extract_index_ivf(index).code_size == spec.code_bytes, factory
        assert spec.residual == bool(faiss.extract_index_ivf(index).by_residual), factory


def test_index_bytes_count_codes_padding_and_ids(built: Path) -> None:
    for n in (10**6, 10**9):
        assert index_bytes_per_template(default_factory(n, 128), 128) == 40 <= 48
    assert index_bytes_per_template("IVF16,PQ8x4", DIM) == 4 + 8
    gallery = open_gallery(built)
    code_size = faiss.extract_index_ivf(gallery.shards[0][1]).code_size
    assert index_bytes_per_template(gallery.manifest.factory, DIM) == code_size + 8
    assert gallery.index_bytes() == N * (code_size + 8)  # 8-bit PQ: no padding
    fast = parse_factory("IVF16,PQ16x4fs", DIM)
    assert (fast.list_bytes(0), fast.list_bytes(1), fast.list_bytes(32)) == (
        0,
        8 * 32 + 8,
        8 * 32 + 256,
    )
    assert fast.list_bytes(33) == 8 * 64 + 8 * 33
    with pytest.raises(GalleryError, match="IVF<nlist>"):
        index_bytes_per_template("HNSW32", DIM)
    with pytest.raises(GalleryError, match="does not divide"):
        parse_factory("IVF16,PQ5", DIM)
    with pytest.raises(GalleryError, match="4-bit"):
        parse_factory("IVF16,PQ16x8fs", DIM)


# ---------------------------------------------------------------------------------- add


def test_add_batch_continues_ids_keeps_balance_and_shares_the_old_segment(
    root: Path, vectors: npt.NDArray[np.float32]
) -> None:
    first = open_gallery(root).manifest
    new = unit_vectors(3, seed=3)
    manifest = add_batch(root, "night-2", names("n", 3), new, model_id=MODEL)
    counts = [s.count for s in manifest.shards]
    assert (manifest.version, manifest.size, manifest.next_id) == (2, N + 3, N + 3)
    assert max(counts) - min(counts) <= 1
    gallery = open_gallery(root)
    assert gallery.gallery_ids(names("n", 3)).tolist() == [N, N + 1, N + 2]
    assert gallery.enrollment_id(N + 1) == "n00001" and gallery.enrollment_id(5) == "e00005"
    assert isinstance(gallery.vectors, SegmentVectors) and gallery.vectors.shape == (N + 3, DIM)
    np.testing.assert_allclose(gallery.vectors[N:].astype(np.float32), new, atol=1e-3)
    np.testing.assert_allclose(gallery.vectors[[N + 2, 7]].astype(np.float32),
                               np.stack([new[2], vectors[7]]), atol=1e-3)  # fmt: skip
    found = search_all(gallery, new, k=10)
    assert all(N + i in hits for i, hits in enumerate(found))

    # The new version names the old segment as it is, and one new segment of 3 rows.
    old, added = manifest.segments
    assert old == first.segments[0] and (added.first_id, added.rows) == (N, 3)
    assert sorted(added.shard_counts) == [0, 1, 1, 1]  # three shards took one template each
    assert sorted(p.name for p in (root / SEGMENTS_DIR).iterdir()) == sorted([old.name, added.name])

    # The same batch again changes nothing, not even the version.
    again = add_batch(root, "night-2", names("n", 3), new, model_id=MODEL)
    assert again == manifest
    assert (root / CURRENT_FILE).read_text(encoding="utf-8").strip() == "v000002"
    assert verify_gallery(root) == manifest


def files_under(root: Path) -> dict[str, tuple[int, int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and p.name not in ("LOCK", CURRENT_FILE)
    }


def bytes_written_by(root: Path, batch: str, count: int, seed: int) -> int:
    """Bytes of the files an add creates; it must change no file that was there."""
    before = files_under(root)
    add_batch(root, batch, names(batch, count), unit_vectors(count, seed), model_id=MODEL)
    after = files_under(root)
    assert {key: after[key] for key in before} == before  # nothing rewritten, nothing linked
    return sum(size for key, (_, size, _) in after.items() if key not in before)


def test_an_add_writes_bytes_in_proportion_to_the_batch_not_the_gallery(root: Path) -> None:
    small = bytes_written_by(root, "a", 8, seed=11)
    bytes_written_by(root, "b", N, seed=12)  # the gallery doubles
    again = bytes_written_by(root, "c", 8, seed=13)
    gallery_bytes = sum(size for _, size, _ in files_under(root).values())
    assert again <= small * 1.02 + 256  # (the ledger grew by two rows)
    assert again < gallery_bytes / 5
    assert len(open_gallery(root).manifest.segments) == 4
    assert verify_gallery(root).size == 2 * N + 16


def test_add_batch_refuses_another_model_duplicates_and_wrong_dimension(root: Path) -> None:
    new = unit_vectors(2, seed=4)
    with pytest.raises(GalleryError, match="never mixes models"):
        add_batch(root, "night-2", ["a", "b"], new, model_id="arcface-r100")
    with pytest.raises(GalleryError, match="already in the gallery"):
        add_batch(root, "night-2", ["a", "e00007"], new, model_id=MODEL)
    with pytest.raises(GalleryError, match="more than once"):
        add_batch(root, "night-2", ["a", "a"], new, model_id=MODEL)
    with pytest.raises(GalleryError, match="64-d"):
        add_batch(root, "night-2", ["a", "b"], unit_vectors(2, seed=4, dim=64), model_id=MODEL)
    assert open_gallery(root).manifest.version == 1


def test_the_clash_check_finds_an_enrollment_in_any_segment_and_only_a_live_one(
    root: Path,
) -> None:
    add_batch(root, "night-2", names("b", 8), unit_vectors(8, seed=21), model_id=MODEL)
    add_batch(root, "night-3", names("c", 8), unit_vectors(8, seed=22), model_id=MODEL)
    new = unit_vectors(2, seed=23)
    for taken in ("e03999", "b00003", "c00007"):  # the first, a middle and the last segment
        with pytest.raises(GalleryError, match=f"1 enrollments .* already .*{taken}"):
            add_batch(root, "night-4", ["z", taken], new, model_id=MODEL)
    erase(root, "b00003")  # tombstoned: no longer live, so it may be enrolled again
    added = add_batch(root, "night-4", ["z", "b00003"], new, model_id=MODEL)
    assert added.size == N + 16 - 1 + 2 and verify_gallery(root).version == added.version


def test_an_id_that_is_not_utf8_is_refused_by_add_and_unknown_to_erase(root: Path) -> None:
    lone = "e\udcff"  # a lone surrogate: no stored id can hold it
    with pytest.raises(GalleryError, match="not valid UTF-8"):
        add_batch(root, "night-2", [lone], unit_vectors(1, seed=26), model_id=MODEL)
    with pytest.raises(GalleryError, match="not in the gallery"):
        erase(root, lone)
    assert open_gallery(root).manifest.version == 1


def test_colliding_enrollment_keys_are_confirmed_against_the_ids(
    tmp_path: Path, vectors: npt.NDArray[np.float32], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys only narrow the search: with every key made equal, every segment is a suspect,
    a new name is still accepted and a taken one still refused."""
    import dedup.gallery.lookup as lookup
    import dedup.gallery.segment_files as segment_files

    def one_key(batch: Any) -> npt.NDArray[np.uint64]:
        return np.zeros(len(list(batch)), dtype=np.uint64)

    monkeypatch.setattr(segment_files, "enrollment_keys", one_key)
    monkeypatch.setattr(lookup, "enrollment_keys", one_key)
    root = tmp_path / "gallery"
    build_gallery(root, names("e", N), vectors, model_id=MODEL, batch_id="night-1",
                  shards=SHARDS, factory=FACTORY)  # fmt: skip
    add_batch(root, "night-2", names("b", 4), unit_vectors(4, seed=24), model_id=MODEL)
    for taken in ("e00001", "b00002"):
        with pytest.raises(GalleryError, match=f"already in the gallery .*{taken}"):
            add_batch(root, "night-3", [taken], unit_vectors(1, seed=25), model_id=MODEL)
    added = add_batch(root, "night-3", ["f"], unit_vectors(1, seed=25), model_id=MODEL)
    assert added.size == N + 5
    monkeypatch.undo()  # keys written under the patch disagree with the ids: verify says so
    with pytest.raises(GalleryError, match="enrollment keys disagree"):
        verify_gallery(root)


@given(
    gallery=st.sets(st.text(min_size=1, max_size=12), max_size=40),
    batch=st.sets(st.text(min_size=1, max_size=12), max_size=20),
)
def test_enrollment_keys_find_exactly_the_names_held(gallery: set[str], batch: set[str]) -> None:
    held = np.sort(enrollment_keys(sorted(gallery)))
    assert holds_any(held, enrollment_keys(sorted(batch))) == bool(gallery & batch)


def test_an_empty_batch_is_recorded_and_old_versions_can_be_pruned(root: Path) -> None:
    empty = add_batch(root, "night-2", [], np.empty((0, DIM), np.float32), model_id=MODEL)
    assert (empty.version, empty.size, empty.next_id) == (2, N, N)
    assert add_batch(root, "night-2", [], np.empty((0, DIM)), model_id=MODEL) == empty
    add_batch(root, "night-3", ["a"], unit_vectors(1, seed=7), model_id=MODEL)
    assert open_gallery(root).gallery_ids([]).tolist() == []
    assert prune_versions(root, keep=2) == ["v000001"]
    assert sorted(p.name for p in (root / VERSIONS_DIR).iterdir()) == ["v000002", "v000003"]
    assert verify_gallery(root).version == 3
    # v000002 and v000003 still name the first segment: pruning v000001 kept it.
    assert len(list((root / SEGMENTS_DIR).iterdir())) == 2


# ---------------------------------------------------------------------------------- erase


def test_erase_then_compact_removes_the_template_everywhere(
    root: Path, vectors: npt.NDArray[np.float32]
) -> None:
    victim = 10
    shard = int(open_gallery(root).ids_table()["shard"][victim].as_py())
    erased = erase(root, "e00010")
    assert (erased.version, erased.size) == (2, N - 1)
    assert erase(root, "e00010") == erased  # erasing twice changes nothing
    gallery = open_gallery(root)
    assert gallery.tombstones.tolist() == [victim]
    assert gallery.is_live(np.array([9, victim, 11])).tolist() == [True, False, True]
    assert gallery.gallery_ids(["e00010"]).tolist() == [-1]
    assert gallery.enrollment_ids(np.array([9, victim, 11])).tolist() == ["e00009", None, "e00011"]
    with pytest.raises(GalleryError, match="not a live template"):
        gallery.enrollment_id(victim)

    compacted = compact(root)
    assert (compacted.version, compacted.size, compacted.next_id) == (3, N - 1, N)
    assert compacted.shards[shard].count == erased.shards[shard].count - 1
    gallery = open_gallery(root)
    assert gallery.shards[shard][1].ntotal == erased.shards[shard].count - 1
    assert gallery.tombstones.tolist() == [victim]
    assert gallery.is_live(np.array([9, victim, 11])).tolist() == [True, False, True]
    assert all(victim not in ids_in_lists(index) for _, index in gallery.shards)
    assert victim not in search_all(gallery, vectors[victim : victim + 1], k=100)[0]
    assert not gallery.vectors[victim].any()
    assert "e00010" not in gallery.ids_table()["enrollment_id"].to_pylist()
    assert gallery.enrollment_id(11) == "e00011" and gallery.ids_table().num_rows == N - 1
    # Older versions still held the template, so compaction pruned them.
    assert sorted(p.name for p in (root / VERSIONS_DIR).iterdir()) == ["v000003"]
    assert verify_gallery(root) == compacted

    # The enrollment may come back later, under a new gallery id.
    again = add_batch(root, "night-2", ["e00010"], vectors[victim : victim + 1], model_id=MODEL)
    assert open_gallery(root).gallery_ids(["e00010"]).tolist() == [N]
    assert again.size == N


def test_erase_of_an_unknown_enrollment_is_refused(root: Path) -> None:
    with pytest.raises(GalleryError, match="not in the gallery"):
        erase(root, "nobody")


# ---------------------------------------------------------------------------------- refusals


def test_opening_an_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="CURRENT is missing"):
        open_gallery(tmp_path)
    with pytest.raises(GalleryError, match="CURRENT is missing"):
        verify_gallery(tmp_path / "absent")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v * 2, "not unit-length"),
        (lambda v: np.where(np.arange(DIM) == 0, np.nan, v), "NaN or infinite"),
        (lambda v: v[:-1], "shape"),
        (lambda v: v[:, :, None], "shape"),
    ],
)
def test_build_refuses_bad_vectors(tmp_path: Path, change: Any, message: str) -> None:
    bad = change(unit_vectors(300, seed=5))
    with pytest.raises(GalleryError, match=message):
        build_gallery(
            tmp_path, names("e", 300), bad, model_id=MODEL, batch_id="b", factory="IVF4,PQ4"
        )
    assert not (tmp_path / CURRENT_FILE).exists()


def test_build_refuses_duplicates_an_existing_gallery_and_too_little_training(
    built: Path, tmp_path: Path
) -> None:
    vectors = unit_vectors(300, seed=6)
    duplicated = [*names("e", 299), "e00000"]
    with pytest.raises(GalleryError, match="more than once"):
        build_gallery(tmp_path, duplicated, vectors, model_id=MODEL, batch_id="b")
    with pytest.raises(GalleryError, match="already exists"):
        build_gallery(built, names("e", 300), vectors, model_id=MODEL, batch_id="b")
    with pytest.raises(GalleryError, match="training templates"):
        build_gallery(tmp_path, names("e", 300), vectors, model_id=MODEL, batch_id="b",
                      factory="IVF512,PQ8")  # fmt: skip


def test_a_manifest_that_contradicts_itself_is_refused(built: Path) -> None:
    manifest = open_gallery(built).manifest
    for bad in (
        dataclasses.replace(manifest, nlist=32),
        dataclasses.replace(manifest, size=N + 1),
        dataclasses.replace(manifest, files={}),
    ):
        with pytest.raises(GalleryError, match="inconsistent"):
            GalleryManifest.from_json(bad.to_json())
    with pytest.raises(GalleryError, match="malformed"):
        GalleryManifest.from_json("{}")


def test_open_shard_reads_one_verified_shard_of_the_published_or_a_named_version(
    root: Path,
) -> None:
    whole = open_gallery(root)
    for where in (root, whole.path):
        one = open_shard(where, 2)
        assert [shard_id for shard_id, _ in one.shards] == [2]
        assert one.shards[0][1].ntotal == whole.manifest.shards[2].count
        assert one.manifest == whole.manifest and one.vectors.shape == whole.vectors.shape
    erase(root, "e00003")
    assert open_shard(root, 0).tombstones.tolist() == [3]
    with pytest.raises(GalleryError, match="not shard 9"):
        open_shard(root, 9)
    shard_path = root / open_gallery(root).manifest.segments[0].key("shard-00001.faiss")
    shard_path.chmod(0o644)
    data = bytearray(shard_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard_path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match=r"shard-00001\.faiss in .* is corrupt"):
        open_shard(root, 1)
    assert open_shard(root, 0).shards[0][1].ntotal > 0  # the other shards still open
