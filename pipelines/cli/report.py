"""``dedup report``: a batch's report (JSON and an HTML page with plots) under the lake."""

from __future__ import annotations

import typer

from pipelines.cli.options import BatchOption, ConfigOption, LakeOption, settings_from
from pipelines.cli.output import console

report_app = typer.Typer()


def _or_dash(value: float | int | None, spec: str = "") -> str:
    return "–" if value is None else format(value, spec)


@report_app.command()
def report(batch_id: BatchOption, lake: LakeOption = None, config: ConfigOption = None) -> None:
    """Write the batch's report: rows by outcome and reason, step timings, candidates by
    score band, threshold and FPIR target, predicted against observed false candidates,
    catch-trial accuracy (reports/<batch>/report.json and report.html under the lake)."""
    from pipelines.report import write_report

    written = write_report(settings_from(config, lake), batch_id)
    r = written.report
    rejected = sum(r.rejected_by_reason.values())
    observed = "not applied yet" if r.observed is None else str(r.observed.false)
    console.print(
        f"batch {r.batch_id}: {r.rows} rows, {r.staged} staged, {rejected} rejected; "
        f"{r.candidates['total']} candidate rows at threshold {_or_dash(r.threshold, '.4f')}; "
        f"false candidates predicted {_or_dash(r.expected_false, '.1f')}, observed {observed}"
    )
    console.print(f"report: {written.json}", soft_wrap=True)
    console.print(f"page: {written.html}", soft_wrap=True)
