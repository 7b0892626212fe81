"""The embed job: a staged batch's face chips into the Delta table ``templates``, on Ray.

1. Read the batch's chips from ``faces`` (delta-rs; no Spark needed), refusing a batch whose
   staging has not finished (``enrollments`` is written last), and skipping enrollments that
   already have a template of this model: a re-run computes and changes nothing.
2. Run an actor pool of ``Embedder``s over them with Ray Data: one GPU per actor when the
   cluster has GPUs, CPU actors otherwise. Actors are restarted and their batches retried when
   a worker dies (Ray Data's own policy; an exception raised by the model is not retried and
   fails the job).
3. Drop any duplicate a retry could produce, check every vector, and MERGE the rows into
   ``templates`` in one Delta commit, inserting only (enrollment_id, model_id) keys not present.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import RenderableType

from dedup.contracts.schemas import TEMPLATES
from dedup.contracts.vectors import matrix_of, vector_column
from dedup.crash_points import crash_once, crash_point
from dedup.errors import LakeError
from dedup.models.dlib_onnx import ensure_dlib_export
from dedup.models.embedder import Embedder
from dedup.observability.job_metrics import job_metrics
from dedup.settings import DLIB_MODEL_ID, Settings
from pipelines.job_report import Figures, JobReport
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.lake.location import Lake
from pipelines.lake.readers import embedding_backlog
from pipelines.ray.cluster import connect, stderr_into


@dataclass(frozen=True, kw_only=True)
class EmbedReport(JobReport):
    model_id: str
    faces: int
    embedded: int
    already_embedded: int
    actors: int
    device: str

    @property
    def faces_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> list[RenderableType]:
        return [
            f"batch {self.batch_id}: {self.embedded} templates of {self.model_id} written "
            f"({self.already_embedded} already there) by {self.device} in "
            f"{self.seconds:.1f} s: {self.faces_per_second:.1f} faces/s"
        ]

    def figures(self) -> Figures:
        """Rows in: the batch's staged faces; out: the templates this run wrote."""
        return {
            **self.timing(self.faces, self.embedded),
            "model": self.model_id,
            "templates_written": self.embedded,
            "already_embedded": self.already_embedded,
            "actors": self.actors,
            "device": self.device,
            "faces_per_second": round(self.faces_per_second, 3),
        }


class EmbedWorker:
    """A Ray Data actor: one ONNX Runtime session, reused for every batch it is given."""

    def __init__(self, settings_json: str) -> None:
        settings = Settings.model_validate_json(settings_json)
        # Ray sets CUDA_VISIBLE_DEVICES to the actor's own GPU, which is then device 0.
        self.embedder = Embedder.from_settings(settings)
        self.model_id = settings.model

    def __call__(self, batch: pa.Table) -> pa.Table:
        crash_once("embed.worker_batch")
        vectors = self.embedder.embed_png(batch["chip_png"].to_pylist())
        return pa.table(
            {
                "enrollment_id": batch["enrollment_id"],
                "batch_id": batch["batch_id"],
                "model_id": pa.array([self.model_id] * batch.num_rows, pa.string()),
                "vector": vector_column(vectors),
            }
        )


def _actor_count(settings: Settings, gpus: int, cpus: int) -> int:
    if settings.embed.actors:
        return settings.embed.actors
    return gpus if gpus else max(1, cpus // settings.embed.cpus_per_actor)


def embed_on_ray(
    chips: pa.Table, settings: Settings, log_file: Path | None = None
) -> tuple[pa.Table, int, str]:
    """Templates for every chip, computed by an actor pool; (rows, actors, device)."""
    import ray

    with stderr_into(log_file):
        connect(settings.embed.ray_address, log_file)
        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        actors = _actor_count(settings, gpus, cpus)
        # A CPU actor gets as many ONNX Runtime threads as the cores it reserves, no more.
        threads = settings.embed.intra_op_threads or (
            None if gpus else settings.embed.cpus_per_actor
        )
        actor_settings = settings.model_copy(
            update={"embed": settings.embed.model_copy(update={"intra_op_threads": threads})}
        )
        batch_size = settings.embed.batch_size
        # Blocks are cut here, on the driver: a Ray-side repartition would need a CPU that the
        # actor pool already holds on a small node, and wait for it forever.
        per_block = max(1, min(batch_size * 4, -(-chips.num_rows // (actors * 2))))
        blocks = [chips.slice(start, per_block) for start in range(0, chips.num_rows, per_block)]
        results = ray.data.from_arrow(blocks).map_batches(
            EmbedWorker,
            fn_constructor_args=(actor_settings.to_json(),),
            batch_size=batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=0 if gpus else settings.embed.cpus_per_actor,
            num_gpus=1 if gpus else 0,
        )
        tables = ray.get(list(results.to_arrow_refs()))
    combined = pa.concat_tables(tables) if tables else TEMPLATES.empty_table()
    return combined, actors, f"{'gpu' if gpus else 'cpu'} x{actors}"


def template_rows(embedded: pa.Table, settings: Settings, now: dt.datetime) -> pa.Table:
    """The rows to commit: one per enrollment (a retried batch may repeat some), checked."""
    first = pc.equal(
        pa.array(range(embedded.num_rows)),
        pa.array(_first_index(embedded["enrollment_id"].to_pylist())),
    )
    unique = embedded.filter(first)
    matrix = matrix_of(unique["vector"], settings.model_spec.dimension)
    if not np.all(np.isfinite(matrix)):
        raise LakeError("the embed job produced non-finite template values; nothing written")
    return pa.table(
        {
            "enrollment_id": unique["enrollment_id"],
            "batch_id": unique["batch_id"],
            "model_id": unique["model_id"],
            "vector": vector_column(matrix).cast(pa.list_(pa.float32())),
            "created_at": pa.array([now] * unique.num_rows, TEMPLATES.field("created_at").type),
        },
        schema=TEMPLATES,
    )


def _first_index(keys: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    for index, key in enumerate(keys):
        seen.setdefault(key, index)
    return [seen[key] for key in keys]


def commit_templates(settings: Settings, rows: pa.Table) -> None:
    """One Delta commit inserting the (enrollment_id, model_id) keys the table lacks."""
    DeltaRsTables(Lake.of(settings)).insert_new("templates", rows)


def run_embed(run: BatchRun) -> EmbedReport:
    """Embed one staged batch. Safe to run again for the same batch at any time."""
    with job_metrics(run.settings.metrics, "embed", run.batch_id) as metrics:
        report = metrics.done(_embed(run))
    return report


def _embed(run: BatchRun) -> EmbedReport:
    started = time.perf_counter()
    batch_id, settings = run.batch_id, run.settings
    chips, already = embedding_backlog(run.lake_root, batch_id, settings.model)
    work = run.begin("embed")
    if settings.model == DLIB_MODEL_ID and settings.model_spec.onnx is None:
        ensure_dlib_export(settings.model_path())
    actors, device = 0, "none"
    if chips.num_rows:
        embedded, actors, device = embed_on_ray(chips, settings, work.log_file("ray.log"))
        rows = template_rows(embedded, settings, dt.datetime.now(dt.UTC))
        if set(rows["enrollment_id"].to_pylist()) != set(chips["enrollment_id"].to_pylist()):
            raise LakeError("the embed job lost enrollments on the way; nothing written")
        crash_point("embed.before_commit")
        commit_templates(settings, rows)
    return EmbedReport(
        batch_id=batch_id,
        model_id=settings.model,
        faces=chips.num_rows + already,
        embedded=chips.num_rows,
        already_embedded=already,
        seconds=time.perf_counter() - started,
        actors=actors,
        device=device,
    )
