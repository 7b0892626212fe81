"""The one command line, ``dedup <command>``: each command a thin call into one function.

One module per command group: ``batch`` (the jobs of a night), ``gallery``, ``review`` (the
review service and its accounts), ``erase`` (erasure on legal request), ``models`` (model
export, fetching artefacts) and ``reference`` (reason codes, settings); ``output`` holds the
consoles and the one error boundary every command runs inside.
"""

from __future__ import annotations

import typer

from pipelines.cli.batch import batch_app
from pipelines.cli.erase import erase_app
from pipelines.cli.gallery import gallery_app
from pipelines.cli.models import fetch_app, model_app
from pipelines.cli.output import ErrorBoundary
from pipelines.cli.reference import reference_app
from pipelines.cli.review import audit_app, review_app, users_app

app = typer.Typer(
    cls=ErrorBoundary,
    help="dedup: nightly face deduplication for identity registries.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for group in (batch_app, review_app, erase_app, reference_app):
    app.registered_commands += group.registered_commands
app.add_typer(fetch_app, name="fetch")
app.add_typer(model_app, name="model")
app.add_typer(gallery_app, name="gallery")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")
