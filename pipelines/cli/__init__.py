"""The one command line, ``dedup <command>``: each command a thin call into one function.

One module per command group: ``batch`` (the jobs of a night), ``gallery``, ``review`` (the
review service and its accounts), ``erase`` (erasure on legal request), ``models`` (model
export, fetching artefacts), ``reference`` (reason codes, settings), ``report`` (the batch
report) and ``evaluate`` (open-set metrics of a labelled evaluation set); ``output`` holds
the consoles and the one error boundary every command runs inside.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from pipelines.cli.batch import batch_app
from pipelines.cli.erase import erase_app
from pipelines.cli.evaluate import evaluate_app
from pipelines.cli.gallery import gallery_app
from pipelines.cli.models import fetch_app, model_app
from pipelines.cli.output import ErrorBoundary
from pipelines.cli.reference import reference_app
from pipelines.cli.report import report_app
from pipelines.cli.review import audit_app, review_app, users_app

app = typer.Typer(
    cls=ErrorBoundary,
    help="dedup: nightly face deduplication for identity registries.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for group in (batch_app, review_app, erase_app, reference_app, report_app, evaluate_app):
    app.registered_commands += group.registered_commands
app.add_typer(fetch_app, name="fetch")
app.add_typer(model_app, name="model")
app.add_typer(gallery_app, name="gallery")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")


def main() -> None:
    """The ``dedup`` script: run the command, release the engines it started, and end the
    process with the command's own exit code.

    The process ends with ``os._exit`` once the command is done and its output flushed: some
    native libraries abort during interpreter teardown in a process that used them (delta-rs
    was seen ending a finished command with SIGABRT), and a command whose work is done must
    not be reported failed by how its interpreter unwinds."""
    try:
        app()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    release_engines()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def release_engines() -> None:
    """Stop a Spark session and a Ray runtime the command left running (what their exit
    hooks would do), without importing either."""
    pyspark_sql = sys.modules.get("pyspark.sql")
    if pyspark_sql is not None:
        session = pyspark_sql.SparkSession.getActiveSession()
        if session is not None:
            session.stop()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
