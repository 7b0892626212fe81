"""The gallery on an ``s3://`` root, on a real S3-compatible server (``scripts/s3-server``, the
session's one): the same operations give what a local gallery gives, a crash while publishing
leaves the published version and a retry repairs it, a second writer is refused by the
conditional ``CURRENT``, the lock is waited for and then refused naming its holder, and a
corrupt cached file is fetched again, never served. Galleries of 2,000 x 32-d, one FAISS thread.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from typer.testing import CliRunner

from dedup.atomic_files import sha256_file
from dedup.crash_points import CRASH_AT_ENV
from dedup.errors import GalleryError, InjectedCrash
from dedup.gallery import s3_lock
from dedup.gallery.engines import IvfPqEngine
from dedup.gallery.erasure import compact, erase
from dedup.gallery.layout import GalleryManifest, shard_file
from dedup.gallery.reader import Gallery, current_manifest, open_gallery, open_shard, verify_gallery
from dedup.gallery.s3_lock import clear_stale_lock
from dedup.gallery.s3_objects import S3Prefix
from dedup.gallery.s3_storage import S3Storage
from dedup.gallery.storage import GalleryLocation, storage_for
from dedup.gallery.writer import add_batch, build_gallery
from dedup.s3_settings import S3Settings
from pipelines.cli import app
from pipelines.ray.shard_actors import ShardActor, shard_candidates
from tests.s3_support import new_bucket, s3_options

N, DIM, MODEL = 2000, 32, "synthetic-v1"
FACTORY = "IVF8,PQ8"
AFTER_FILES = "gallery.publish.after_files"
AFTER_RENAME = "gallery.publish.after_rename"

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def unit_vectors(n: int, seed: int) -> npt.NDArray[np.float32]:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    unit: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


NAMES = [f"e{i:05d}" for i in range(N + 100)]
VECTORS = unit_vectors(N + 100, 1)


@dataclass(frozen=True)
class Store:
    """One bucket of the test server, and the local cache the galleries in it are read from."""

    endpoint: str
    bucket: str
    cache: Path

    @property
    def s3(self) -> S3Settings:
        return S3Settings(**s3_options(self.endpoint))

    def where(self, name: str, cache: Path | None = None) -> GalleryLocation:
        return GalleryLocation(f"s3://{self.bucket}/{name}", self.s3, cache or self.cache)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def keys(self, name: str) -> list[str]:
        """Every object of the gallery ``name``, by key relative to its root."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=f"{name}/")
        )
        return sorted(o["Key"][len(name) + 1 :] for p in pages for o in p.get("Contents", []))

    def folders(self, name: str, folder: str) -> list[str]:
        return sorted({k.split("/")[1] for k in self.keys(name) if k.startswith(f"{folder}/")})

    def copy(self, source: str, name: str) -> GalleryLocation:
        """A server-side copy of gallery ``source`` (metadata included) as ``name``."""
        client = self.client()
        for key in self.keys(source):
            client.copy_object(
                Bucket=self.bucket,
                Key=f"{name}/{key}",
                CopySource={"Bucket": self.bucket, "Key": f"{source}/{key}"},
            )
        return self.where(name)


@pytest.fixture(scope="module")
def store(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(s3_endpoint, new_bucket(s3_endpoint), tmp_path_factory.mktemp("gallery-cache"))


@pytest.fixture(scope="module")
def base(store: Store) -> str:
    """A gallery of N templates, built once; each test works on its own copy."""
    build_gallery(store.where("base"), NAMES[:N], VECTORS[:N], model_id=MODEL, batch_id="night-1",
                  factory=FACTORY)  # fmt: skip
    return "base"


def searched(gallery: Gallery) -> tuple[list[list[float]], list[list[int]]]:
    scores, ids = IvfPqEngine(nprobe=4, shortlist=50).search(gallery, VECTORS[::40], 10)
    return np.round(scores, 6).tolist(), ids.tolist()


def shape(manifest: GalleryManifest) -> tuple[Any, ...]:
    """What two galleries made by the same operations share (not their random names)."""
    segments = [(s.first_id, s.rows, s.shard_counts) for s in manifest.segments]
    return manifest.version, manifest.size, manifest.next_id, manifest.factory, segments


def test_build_add_search_erase_compact_give_what_a_local_gallery_gives(
    store: Store, tmp_path: Path
) -> None:
    local, remote = tmp_path / "gallery", store.where("parity")
    seen = []
    for root in (local, remote):
        build_gallery(root, NAMES[:N], VECTORS[:N], model_id=MODEL, batch_id="night-1",
                      factory=FACTORY)  # fmt: skip
        add_batch(root, "night-2", NAMES[N:], VECTORS[N:], model_id=MODEL)
        added = searched(open_gallery(root))
        erase(root, "e00003")
        erase(root, NAMES[N + 5])
        gallery = open_gallery(root, verify=True)
        erased = searched(gallery), gallery.gallery_ids(["e00003", NAMES[N + 5], "e00004"]).tolist()
        compacted = compact(root)
        assert verify_gallery(root) == compacted
        seen.append((shape(compacted), added, erased, searched(open_gallery(root, mmap=True))))
    assert seen[0] == seen[1]
    assert seen[1][2][1] == [-1, -1, 4]
    # Written in place, nothing staged; compaction kept only the version it published.
    keys = store.keys("parity")
    assert not [key for key in keys if ".tmp-" in key]
    assert store.folders("parity", "versions") == ["v000005"]
    named = {segment.name for segment in compacted.segments}
    assert set(store.folders("parity", "segments")) == named
    assert (
        "LOCK" not in keys
        and store.client().get_object(Bucket=store.bucket, Key="parity/CURRENT")["Body"].read()
        == b"v000005\n"
    )


def test_a_crash_while_publishing_keeps_the_published_version_and_a_retry_repairs_it(
    store: Store, base: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = store.copy(base, "crash")

    def add() -> GalleryManifest:
        return add_batch(root, "night-2", NAMES[N:], VECTORS[N:], model_id=MODEL)

    def erasure() -> GalleryManifest:
        return erase(root, "e00007")

    for point, operation, version in ((AFTER_FILES, add, 1), (AFTER_RENAME, erasure, 2)):
        segments = store.folders("crash", "segments")
        monkeypatch.setenv(CRASH_AT_ENV, point)
        with pytest.raises(InjectedCrash):
            operation()
        monkeypatch.delenv(CRASH_AT_ENV)
        assert verify_gallery(root).version == version
        assert storage_for(root).read_current() == f"v{version:06d}"
        crashed = f"v{version + 1:06d}"
        assert store.folders("crash", "versions")[-1] == crashed  # written, never named
        assert S3Storage(root).holder() is None  # the lock went with the crash
        if operation is erasure:
            # Another node reads the crash's version files into its cache: after the retry
            # rewrote them, that node must read the retry's, not its stale copies.
            other = root.join(f"versions/{crashed}")
            open_shard(GalleryLocation(other.root, store.s3, tmp_path / "node-2"), 0)
        else:
            assert len(store.folders("crash", "segments")) == len(segments) + 1  # an orphan
        manifest = operation()
        assert manifest.version == version + 1 and verify_gallery(root) == manifest
        assert store.folders("crash", "versions")[-1] == crashed
        named = {s.name for s in manifest.segments}
        assert set(store.folders("crash", "segments")) == named  # the orphan was swept
    node = GalleryLocation(root.root, store.s3, tmp_path / "node-2")
    gallery = open_gallery(node, verify=True)
    assert gallery.manifest == manifest
    assert gallery.gallery_ids(["e00007", NAMES[N]]).tolist() == [-1, N]


def test_a_second_writer_is_refused_by_the_conditional_current(store: Store, base: str) -> None:
    root = store.copy(base, "race")
    late = storage_for(root)
    _, manifest = current_manifest(late)  # this writer starts from v1 ...
    erase(root, "e00001")  # ... and another publishes v2 meanwhile
    with pytest.raises(GalleryError, match=r"version v000002 .* was not published: another "
                       r"writer replaced CURRENT \(it names v000002\) after this writer read "
                       r"v000001; nothing was overwritten"):  # fmt: skip
        late.replace_current("v000002", expected=manifest.version_name)
    assert verify_gallery(root).version == 2
    assert open_gallery(root).gallery_ids(["e00001"]).tolist() == [-1]

    # A first version: If-None-Match, so a second build never replaces the first.
    first, second = storage_for(store.where("race-new")), storage_for(store.where("race-new"))
    assert first.read_current() is None and second.read_current() is None
    first.replace_current("v000001", expected=None)
    with pytest.raises(GalleryError, match=r"another writer replaced CURRENT \(it names v000001"):
        second.replace_current("v000001", expected=None)

    # A writer whose lock was cleared while it ran does not publish.
    writer = S3Storage(root)
    with writer.lock():
        writer.read_current()
        clear_stale_lock(root, str((writer.holder() or {})["token"]))
        with pytest.raises(GalleryError, match="lock was cleared while it ran"):
            writer.replace_current("v000003", expected="v000002")
    assert storage_for(root).read_current() == "v000002"


def test_the_lock_is_waited_for_then_refused_naming_its_holder(
    store: Store, base: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = store.copy(base, "locked")
    holder, held, release = S3Storage(root), threading.Event(), threading.Event()

    def hold() -> None:
        with holder.lock():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with S3Storage(root, lock_wait_s=10).lock():
        waited = time.monotonic() - started
    thread.join()
    assert 0.25 < waited < 5

    # A writer killed while it held the lock leaves it behind; the next one waits, then says
    # who holds it and how to clear it.
    left = {"holder": "dedup@node-7 pid 4242", "command": "dedup match --batch-id n-9",
            "token": "0123456789abcdef", "acquired_at": "2026-12-01T02:00:00+00:00"}  # fmt: skip
    store.client().put_object(Bucket=store.bucket, Key="locked/LOCK", Body=json.dumps(left))
    monkeypatch.setattr(s3_lock, "LOCK_WAIT_S", 0.3)
    with pytest.raises(
        GalleryError,
        match=r"locked by dedup@node-7 pid 4242 \(`dedup match --batch-id n-9`\) since "
        r"2026-12-01T02:00:00\+00:00, lock token 0123456789abcdef; waited 0 s\. .*If it is "
        r"gone .* `dedup gallery unlock --gallery s3://.*/locked --token 0123456789abcdef`",
    ):
        erase(root, "e00002")
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"s3": s3_options(store.endpoint)}), encoding="utf-8")
    command = ["gallery", "unlock", "--gallery", root.root, "--config", str(config)]
    refused = CliRunner().invoke(app, [*command, "--token", "another"])
    assert refused.exit_code != 0 and S3Storage(root).holder() == left
    cleared = CliRunner().invoke(app, [*command, "--token", left["token"]])
    assert cleared.exit_code == 0, cleared.output
    assert "cleared the lock" in cleared.output and S3Storage(root).holder() is None
    assert erase(root, "e00002").version == 2


def test_a_corrupt_cached_file_is_fetched_again_and_never_served(
    store: Store, base: str, tmp_path: Path
) -> None:
    root = store.copy(base, "cached")
    gallery = open_gallery(root, verify=True)  # every file now in the cache
    segment = gallery.manifest.segments[0]
    storage = S3Storage(root)

    def flip(path: Path) -> None:  # the node's disk going bad
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    shard = storage.local_path(segment.key(shard_file(0)))
    flip(shard)
    actor = ShardActor(root, 0, mmap=False)  # a Ray shard actor proves its files first
    assert sha256_file(shard) == segment.files[shard_file(0)]
    probes = VECTORS[:20]
    want = shard_candidates(gallery, gallery.shards[0][1], probes, 4, 50)
    np.testing.assert_array_equal(actor.search(probes, 4, 50)[1], want[1])

    vectors = storage.local_path(segment.key("vectors.npy"))
    flip(vectors)
    assert verify_gallery(root) == gallery.manifest
    assert sha256_file(vectors) == segment.files["vectors.npy"]

    # A copy in the bucket that no longer hashes to what was written is refused by name.
    client, key = store.client(), f"cached/{segment.key('ids.parquet')}"
    reply = client.get_object(Bucket=store.bucket, Key=key)
    bad = bytearray(reply["Body"].read())
    bad[len(bad) // 2] ^= 0x01
    client.put_object(Bucket=store.bucket, Key=key, Body=bytes(bad), Metadata=reply["Metadata"])
    elsewhere = GalleryLocation(root.root, store.s3, tmp_path / "node-2")
    with pytest.raises(GalleryError, match=r"ids\.parquet .* does not hash to the sha256 it was "
                       r"written with: the copy in the bucket is corrupt"):  # fmt: skip
        open_gallery(elsewhere, verify=True)


def test_a_failed_download_leaves_no_file_under_the_real_name(
    store: Store, base: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = GalleryLocation(store.where(base).root, store.s3, tmp_path / "cache")
    storage = S3Storage(root)
    key = current_manifest(storage)[1].segments[0].key("vectors.npy")

    def cut_off(self: S3Prefix, key: str, path: str) -> None:
        Path(path).write_bytes(b"\x93NUMPY half of it")
        raise GalleryError("connection reset")

    with monkeypatch.context() as patched:
        patched.setattr(S3Prefix, "download", cut_off)
        with pytest.raises(GalleryError, match="connection reset"):
            storage.local_path(key)
    folder = storage.cache.path(key).parent
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".lock")] == []
    assert np.load(storage.local_path(key), mmap_mode="r").shape == (N, DIM)


def test_only_local_folders_and_s3_locations_are_galleries() -> None:
    with pytest.raises(GalleryError, match=r"only local folders and s3:// locations"):
        open_gallery("gs://bucket/gallery")
    with pytest.raises(GalleryError, match="names no bucket"):
        GalleryLocation("s3:///gallery")
    with pytest.raises(GalleryError, match="s3:// location made into a local path"):
        open_gallery(Path("s3://bucket/gallery"))
