"""``dedup report``: a batch's report (JSON and an HTML page with plots) under the lake."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer
from rich.console import RenderableType

from pipelines.cli.options import BatchOption, ConfigOption, LakeOption, settings_from
from pipelines.job_report import Figures, JobReport
from pipelines.lake.batch_run import BatchRun

if TYPE_CHECKING:
    from pipelines.report import ReportPaths

report_app = typer.Typer()


def _or_dash(value: float | int | None, spec: str = "") -> str:
    return "–" if value is None else format(value, spec)


@dataclass(frozen=True, kw_only=True)
class ReportWritten(JobReport):
    written: ReportPaths

    def summary(self) -> list[RenderableType]:
        r = self.written.report
        rejected = sum(r.rejected_by_reason.values())
        observed = "not applied yet" if r.observed is None else str(r.observed.false)
        return [
            f"batch {r.batch_id}: {r.rows} rows, {r.staged} staged, {rejected} rejected; "
            f"{r.candidates['total']} candidate rows at threshold "
            f"{_or_dash(r.threshold, '.4f')}; false candidates predicted "
            f"{_or_dash(r.expected_false, '.1f')}, observed {observed}",
            f"report: {self.written.json}",
            f"page: {self.written.html}",
        ]

    def figures(self) -> Figures:
        """Rows in: the batch's manifest rows; out: the two files."""
        return self.timing(self.written.report.rows, 2)


@report_app.command()
def report(batch_id: BatchOption, lake: LakeOption = None, config: ConfigOption = None) -> None:
    """Write the batch's report: rows by outcome and reason, step timings, candidates by
    score band, threshold and FPIR target, predicted against observed false candidates,
    catch-trial accuracy (reports/<batch>/report.json and report.html under the lake)."""
    from pipelines.cli.batch import run_job
    from pipelines.report import write_report

    run = BatchRun(batch_id, settings_from(config, lake))

    def job() -> JobReport:
        started = time.perf_counter()
        written = write_report(run.settings, batch_id)
        return ReportWritten(
            batch_id=batch_id, seconds=time.perf_counter() - started, written=written
        )

    run_job(run, "report", job)
