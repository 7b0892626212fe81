"""A night's steps, and the record that each one finished: the ``batch_runs`` table.

Every job, run on its own (``dedup stage``) or by ``dedup nightly``, records its completion
here as its last act: the batch, the step, when it started and ended, its figures
(``JobReport.figures``) and the hash of the settings it ran under. The night judges a step
by this record and nothing else: a step whose process ended badly after it recorded its
completion (a library aborting at interpreter exit, say) is done; one that exited 0 without
the record is not.

The first completion of a step is the one kept (insert-only on (batch, step)); a later
re-run of a finished step changes no table, so it has nothing new to record.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from dedup.contracts.schemas import BATCH_RUNS
from dedup.crash_points import crash_point
from dedup.settings import Settings
from pipelines.job_report import JobReport
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.lake.location import Lake

Step = Literal["stage", "embed", "match", "enqueue", "apply", "report"]
STEPS: tuple[Step, ...] = ("stage", "embed", "match", "enqueue", "apply", "report")


def settings_hash(settings: Settings) -> str:
    """A short hash of the settings a step ran under (the whole resolved settings)."""
    return hashlib.sha256(settings.to_json().encode("utf-8")).hexdigest()[:16]


def record_step(
    settings: Settings, batch_id: str, step: Step, started: datetime, report: JobReport
) -> None:
    """Record that ``step`` of ``batch_id`` finished, with its figures."""
    crash_point(f"{step}.before_record")
    figures = {k: _plain(v) for k, v in report.figures().items()}
    row = {
        "batch_id": batch_id,
        "step": step,
        "started_at": started,
        "finished_at": datetime.now(UTC),
        "figures": json.dumps(figures, sort_keys=True),
        "settings_hash": settings_hash(settings),
    }
    rows = pa.Table.from_pylist([row], BATCH_RUNS)
    DeltaRsTables(Lake.of(settings)).insert_new("batch_runs", rows)
    crash_point(f"{step}.after_record")


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def completed(lake: str | Lake, batch_id: str) -> dict[str, dict[str, Any]]:
    """The recorded steps of a batch: step -> its row (figures decoded)."""
    rows = DeltaRsTables(lake).read(
        "batch_runs", BATCH_RUNS.names, pc.field("batch_id") == batch_id
    )
    if rows is None:
        return {}
    return {r["step"]: {**r, "figures": json.loads(r["figures"])} for r in rows.to_pylist()}
