"""``dedup erase``: erase an enrollment everywhere it lives, on legal request.

The same operation as the supervisor's ``POST /api/v1/erasures/{id}`` (``operations.erase``
with ``pipelines.erasure.LakeEraser``): the lake and its history, the work folders, the
gallery and its versions, and the review queue, with an audit entry.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from pipelines.cli.options import ConfigOption, LakeOption, settings_from
from pipelines.cli.output import console

erase_app = typer.Typer()


@erase_app.command()
def erase(
    enrollment_id: Annotated[str, typer.Option("--enrollment-id", help="The enrollment to erase.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (the legal request it answers); audited.")
    ],
    gallery: Annotated[
        str | None,
        typer.Option("--gallery", help="Gallery root, a folder or s3:// (overrides the settings)."),
    ] = None,
    config: ConfigOption = None,
    lake: LakeOption = None,
) -> None:
    """Erase an enrollment from the lake (every version), the gallery and the review queue."""
    from dedup.adjudication import operations
    from dedup.adjudication.access import Actor, Role
    from dedup.adjudication.context import opened
    from pipelines.erasure import LakeEraser

    settings = settings_from(config, lake)
    if gallery is not None:
        settings = settings.model_copy(update={"gallery": str(gallery)})
    actor = Actor.local(f"cli:{getpass.getuser()}", Role.SUPERVISOR)
    with opened(settings) as context:
        report = operations.erase(
            context, actor, enrollment_id, reason, LakeEraser.from_settings(settings)
        )
    if report.nothing_left:
        console.print(f"nothing left of {enrollment_id}: it had been erased already")
    else:
        console.print(f"erased {enrollment_id}")
    records = report.records
    if records is not None:
        found = ", ".join(f"{n} {place}" for place, n in records.removed.items() if n)
        console.print(f"  lake and gallery: {found or 'nothing left'}")
        done = ", ".join(f"{n} {place}" for place, n in records.reclaimed.items() if n)
        console.print(f"  history: {done or 'nothing to reclaim'}")
        if records.identity_renamed_to:
            console.print(f"  its identity is now {records.identity_renamed_to}")
    queue = report.queue
    console.print(
        f"  review queue: {queue.cases_removed} cases, {queue.candidate_rows_removed} "
        f"candidacies, {queue.members_removed} group memberships removed, "
        f"{queue.cases_promoted} cases led by the next member; "
        f"subject {'removed' if queue.subject_removed else 'not present'}"
    )
    console.print(f"  review database: {report.database}")
