"""One batch's run: the value every job of a night takes.

A batch id names folders and keys rows, so it is validated once, here, whichever job or
command the run starts from. Each job keeps its intermediate files in its own work folder,
``<lake>/_work/<job>/<batch>`` (named after its unit of work, so a retry overwrites instead
of appending), with the settings of the run written atomically beside them. The lake may be
a local folder or an ``s3://`` prefix (``pipelines.lake.work_files``).

>>> from dedup.settings import Settings
>>> run = BatchRun("2026-12-01", Settings(lake="/data/lake"))
>>> run.work("stage").location
'/data/lake/_work/stage/2026-12-01'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dedup.contracts.batch_ids import check_batch_id
from dedup.settings import Settings, default_cache_dir
from pipelines.lake.location import Lake
from pipelines.lake.work_files import WorkFolder

Job = Literal["stage", "embed", "match", "enqueue", "apply", "report", "night"]
SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class BatchRun:
    """A validated batch id and the settings its jobs run with."""

    batch_id: str
    settings: Settings

    def __post_init__(self) -> None:
        check_batch_id(self.batch_id)

    @property
    def lake(self) -> str:
        return self.settings.lake

    @property
    def lake_root(self) -> Lake:
        """The lake with the object-store settings that open it."""
        return Lake.of(self.settings)

    def work(self, job: Job) -> WorkFolder:
        """The job's work folder for this batch (not created)."""
        relative = f"_work/{job}/{self.batch_id}"
        lake = self.lake_root
        if self.settings.log_dir is not None:
            logs = self.settings.log_dir / job / self.batch_id
        elif lake.is_s3:
            logs = default_cache_dir() / "logs" / job / self.batch_id
        else:
            logs = Path(lake.join(relative))
        return WorkFolder(lake, relative, logs)

    def begin(self, job: Job) -> WorkFolder:
        """The job's work folder, with this run's settings written into it atomically: what
        a job wrote can always be traced to the settings that produced it."""
        folder = self.work(job)
        folder.write_bytes(SETTINGS_FILE, self.settings.to_json().encode("utf-8"))
        return folder
