"""1:N search with every gallery shard held by its own Ray actor: the match job's engine.

``RayShardSearch`` is a ``SearchEngine`` (see ``dedup.gallery.engines``) that gives the same
answer as the in-process ``IvfPqEngine``, with the work spread the way the brief wants it at
scale: one ``ShardActor`` per shard loads only the trained index and its own shard's files in
the version's segments (after proving their sha256 against the version's manifest) and
memory-maps the segments' vectors. A search puts the probes in
the object store once and every actor, at the same time,

1. takes its compressed-domain shortlist (IVF-PQ, ``nprobe`` lists),
2. re-scores that shortlist exactly (float32 cosines from the full vectors),
3. drops erased ids (tombstones of its version),

so the driver only concatenates already-exact lists in shard order and keeps the top k with the
in-process engine's own ``top_k``. Both paths run the same functions on the same arrays (see
``shard_candidates``), so they return the same ids in the same order and the same scores.

Example::

    with RayShardSearch(nprobe=64, shortlist=100) as engine:  # dedup.matching.candidates:
        candidates = search_batch(gallery, probe_ids, probes, k=20, threshold=t, engine=engine)

A local gallery must be readable at the same path on every node (a shared file system or a
replica per node). An ``s3://`` gallery is read by each actor from its node's cache
(``dedup.gallery.s3_storage``: downloaded once per node, verified), with the ``s3`` settings
the actor is given and the credentials of its own environment. Actors are started on the
first search of a version and reused by every later search of that version; a search of
another version replaces them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import faiss
import numpy as np

from dedup.errors import GalleryError
from dedup.gallery.engines import Ids, Scores, drop_erased, exact_scores, top_k
from dedup.gallery.layout import GalleryManifest
from dedup.gallery.reader import Gallery, open_shard
from dedup.gallery.storage import GalleryLocation, GalleryRoot
from pipelines.ray.cluster import connect, stderr_into

# Ray restarts a shard actor whose process died (OOM, lost node) and retries its search:
# a search reads immutable files only, so running it again is safe.
ACTOR_RESTARTS = 3
# Ray accepts fractional resources down to 1/10000.
_RESOURCE_STEP = 10_000


def shard_candidates(
    gallery: Gallery, shard: faiss.Index, probes: Scores, nprobe: int, shortlist: int
) -> tuple[Scores, Ids]:
    """One shard's part of ``IvfPqEngine.search``: its shortlist, re-scored exactly, dead dropped.

    ``IvfPqEngine`` runs this step on the concatenation of every shard's ids; re-scoring and
    dropping the dead work id by id, so concatenating each shard's result gives the very same
    arrays, and ``top_k`` over them the very same ranking. ``gallery`` provides the full
    vectors and ``is_live``; it may hold just the one shard.
    """
    faiss.extract_index_ivf(shard).nprobe = nprobe
    _, ids = shard.search(probes, shortlist)
    return drop_erased(gallery, exact_scores(gallery, probes, ids), ids)


def merge_shard_candidates(replies: list[tuple[Scores, Ids]], k: int) -> tuple[Scores, Ids]:
    """The best k of every shard's exact list, in shard order, as the in-process engine keeps."""
    scores = np.concatenate([scores for scores, _ in replies], axis=1)
    ids = np.concatenate([ids for _, ids in replies], axis=1)
    return top_k(scores, ids, k)


@dataclass(frozen=True)
class ShardInfo:
    """What a started actor serves, so the driver can check it against its own manifest."""

    version: str
    shard: int
    templates: int
    device: str


class ShardActor:
    """One shard of one published version, ready to search; the body of a Ray actor.

    Only this shard's files are read, and only after their sha256 matches the manifest: a corrupt
    shard raises ``GalleryError`` here and the actor never serves. Tombstones come from the same
    immutable version, so the ids the actor drops are exactly those the driver's ``Gallery``
    refuses. A plain class, so it can also be used, and tested, without Ray.
    """

    def __init__(self, gallery: GalleryRoot, shard_id: int, mmap: bool, gpu: bool = False) -> None:
        self._gallery = open_shard(gallery, shard_id, mmap=mmap)
        index = self._gallery.shards[0][1]
        manifest = self._gallery.manifest
        self._index = index
        self._gpu_resources: Any = None
        if gpu and hasattr(faiss, "StandardGpuResources"):
            # Ray sets CUDA_VISIBLE_DEVICES to the actor's own GPU, which is then device 0.
            self._gpu_resources = faiss.StandardGpuResources()
            self._index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
        self._info = ShardInfo(
            manifest.version_name,
            shard_id,
            int(index.ntotal),
            "gpu" if self._gpu_resources is not None else "cpu",
        )

    def ready(self) -> ShardInfo:
        return self._info

    def search(self, probes: Scores, nprobe: int, shortlist: int) -> tuple[Scores, Ids]:
        """(B, shortlist) exact float32 cosines and gallery ids, in FAISS's order; -inf/-1 dead.

        The list is not cut to k: the driver must see what the in-process engine sees.
        """
        matrix = np.ascontiguousarray(probes, dtype=np.float32)
        if self._gpu_resources is None:
            return shard_candidates(self._gallery, self._index, matrix, nprobe, shortlist)
        faiss.GpuParameterSpace().set_index_parameter(self._index, "nprobe", nprobe)
        _, ids = self._index.search(matrix, shortlist)
        ids = ids.astype(np.int64)
        return drop_erased(self._gallery, exact_scores(self._gallery, matrix, ids), ids)


def shard_actor_class(num_cpus: float, num_gpus: float) -> Any:
    """``ShardActor`` as a Ray actor class with these resources (needs ``ray`` only now)."""
    import ray

    return ray.remote(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        max_restarts=ACTOR_RESTARTS,
        max_task_retries=ACTOR_RESTARTS,
    )(ShardActor)


def actor_resources(
    shards: int, cluster: dict[str, float], cpus_per_actor: float = 1.0
) -> tuple[float, float]:
    """(num_cpus, num_gpus) of each shard actor, so that every shard's actor fits at once.

    One GPU per actor when the cluster has GPUs, ``cpus_per_actor`` cores otherwise; when there
    are fewer of them than shards, the actors share them evenly (a search needs every shard, so
    an actor left waiting for a free GPU would stall the whole batch).

    >>> actor_resources(3, {"CPU": 2.0})
    (0.6666, 0.0)
    >>> actor_resources(2, {"CPU": 16.0, "GPU": 4.0})
    (1.0, 1.0)
    """
    cpus, gpus = float(cluster.get("CPU", 0.0)), float(cluster.get("GPU", 0.0))
    num_cpus = min(cpus_per_actor, _share(cpus, shards))
    num_gpus = min(1.0, _share(gpus, shards))
    if num_cpus <= 0 and num_gpus <= 0:
        raise GalleryError(f"the Ray cluster has no CPU or GPU to hold {shards} gallery shards")
    return num_cpus, num_gpus


def _share(total: float, parts: int) -> float:
    return math.floor(total / parts * _RESOURCE_STEP) / _RESOURCE_STEP


class RayShardSearch:
    """``IvfPqEngine`` with one Ray actor per shard; same ``nprobe`` and ``shortlist`` meaning.

    Call ``close()`` (or use it as a context manager) to stop the actors.
    """

    name: str = "ivfpq-ray"

    def __init__(
        self,
        nprobe: int = 64,
        shortlist: int = 100,
        *,
        mmap: bool = False,
        cpus_per_actor: float = 1.0,
        start_timeout_s: float = 600.0,
        address: str | None = None,
        log_file: Path | None = None,
    ) -> None:
        if nprobe < 1 or shortlist < 1 or cpus_per_actor <= 0 or start_timeout_s <= 0:
            raise GalleryError(
                "nprobe, shortlist, cpus_per_actor and start_timeout_s must be positive"
            )
        self.nprobe = nprobe
        self.shortlist = shortlist
        self.mmap = mmap
        self.cpus_per_actor = cpus_per_actor
        self.start_timeout_s = start_timeout_s
        self.address = address
        # Where Ray's own output goes while the actors start (``pipelines.ray.cluster``).
        self.log_file = log_file
        self._version: GalleryLocation | None = None
        self._actors: list[Any] = []
        self._devices: list[str] = []

    @property
    def serving(self) -> GalleryLocation | None:
        """The version the running actors serve, None when none run."""
        return self._version

    @property
    def devices(self) -> list[str]:
        """``cpu`` or ``gpu`` per shard actor, in shard order."""
        return list(self._devices)

    def search(self, gallery: Gallery, probes: Scores, k: int) -> tuple[Scores, Ids]:
        import ray
        from ray.exceptions import RayActorError

        actors = self._actors_for(gallery)
        per_shard = max(self.shortlist, k)
        shared = ray.put(np.ascontiguousarray(probes, dtype=np.float32))
        calls = [actor.search.remote(shared, self.nprobe, per_shard) for actor in actors]
        try:
            replies: list[tuple[Scores, Ids]] = ray.get(calls)
        except RayActorError:
            self.close()  # the next search starts fresh actors
            raise
        return merge_shard_candidates(replies, k)

    def close(self) -> None:
        """Kill the shard actors; the next search starts new ones."""
        if self._actors:
            import ray

            for actor in self._actors:
                ray.kill(actor)
        self._actors, self._devices, self._version = [], [], None

    def __enter__(self) -> RayShardSearch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _actors_for(self, gallery: Gallery) -> list[Any]:
        version = gallery.location
        if self._version != version:
            self.close()
            self._start(version, gallery.manifest)
        return self._actors

    def _start(self, version: GalleryLocation, manifest: GalleryManifest) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        with stderr_into(self.log_file):
            connect(self.address, self.log_file)
        cluster: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        num_cpus, num_gpus = actor_resources(len(manifest.shards), cluster, self.cpus_per_actor)
        actor_class = shard_actor_class(num_cpus, num_gpus)
        actors = [
            actor_class.remote(version, entry.id, self.mmap, num_gpus > 0)
            for entry in manifest.shards
        ]
        pending = [actor.ready.remote() for actor in actors]  # every shard loads at once
        deadline = time.monotonic() + self.start_timeout_s
        infos: list[ShardInfo] = []
        try:
            for entry, reply in zip(manifest.shards, pending, strict=True):
                try:
                    infos.append(ray.get(reply, timeout=max(0.0, deadline - time.monotonic())))
                except (RayActorError, RayTaskError) as error:
                    raise GalleryError(
                        f"the actor for gallery shard {entry.file} of {version} refused to start: "
                        f"{_root_cause(error)}"
                    ) from error
                except GetTimeoutError as error:
                    raise GalleryError(
                        f"the actor for gallery shard {entry.file} of {version} did not start "
                        f"within {self.start_timeout_s:g} s: each shard actor needs {num_cpus:g} "
                        f"CPU and {num_gpus:g} GPU of the cluster's {cluster.get('CPU', 0):g} "
                        f"CPU and {cluster.get('GPU', 0):g} GPU, which another search may hold"
                    ) from error
            expected = [(manifest.version_name, s.id, s.count) for s in manifest.shards]
            if [(i.version, i.shard, i.templates) for i in infos] != expected:
                raise GalleryError(f"the shard actors of {version} disagree with its manifest")
        except BaseException:
            for actor in actors:
                ray.kill(actor)
            raise
        self._actors, self._devices, self._version = actors, [i.device for i in infos], version


def _root_cause(error: Exception) -> str:
    """The last line of the remote traceback: the message of the error the actor raised."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else type(error).__name__
    return last.removeprefix(f"{GalleryError.__module__}.")
