"""One batch's run: the value every job of a night takes.

A batch id names folders and keys rows, so it is validated once, here, whichever job or
command the run starts from. Each job keeps its intermediate files in its own work folder,
``<lake>/_work/<job>/<batch>`` (named after its unit of work, so a retry overwrites instead
of appending), with the settings of the run written atomically beside them.

>>> from dedup.settings import Settings
>>> run = BatchRun("2026-12-01", Settings(lake="/data/lake"))
>>> str(run.work("stage"))
'/data/lake/_work/stage/2026-12-01'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dedup.atomic_files import write_bytes_atomically
from dedup.contracts.batch_ids import check_batch_id
from dedup.settings import Settings

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

    def work(self, job: Job) -> Path:
        """The job's work folder for this batch (not created)."""
        return Path(self.lake) / "_work" / job / self.batch_id

    def begin(self, job: Job) -> Path:
        """The job's work folder, with this run's settings written into it atomically: what
        a job wrote can always be traced to the settings that produced it."""
        folder = self.work(job)
        write_bytes_atomically(folder / SETTINGS_FILE, self.settings.to_json().encode("utf-8"))
        return folder
