"""``dedup serve``, ``dedup migrate``, ``dedup enqueue``, ``dedup users ...`` and ``dedup audit
verify``: the review service and what operators do around it."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from dedup.contracts.locations import is_uri
from dedup.errors import ConfigError
from dedup.reporting import reports_root
from dedup.settings import Settings
from pipelines.cli.options import ConfigOption, LakeOption, settings_from
from pipelines.cli.output import console

review_app = typer.Typer()
users_app = typer.Typer(help="Review-service accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="The review service's audit log.", no_args_is_help=True)


def _engine(settings: Settings, migrate: bool = True) -> Any:
    from dedup.adjudication import database

    engine = database.connect(settings.adjudication_database_url())
    if migrate:
        database.migrate(engine)
    return engine


def with_reports(settings: Settings) -> Settings:
    """The settings with the operator page's reports folder filled in from a local lake
    (``<lake>/reports``, where ``dedup report`` writes) unless one is set."""
    if settings.adjudication.reports_dir is not None or is_uri(settings.lake):
        return settings
    adjudication = settings.adjudication.model_copy(update={"reports_dir": reports_root(settings)})
    return settings.model_copy(update={"adjudication": adjudication})


def serve_review(settings: Settings, migrate: bool, announce: str | None = None) -> None:
    """Run the service in the foreground until interrupted (Ctrl-C)."""
    import uvicorn

    from dedup.adjudication.service import create_app
    from pipelines.erasure import LakeEraser

    engine = _engine(settings, migrate)
    # A supervisor's erasure reaches the lake and the gallery of these settings, as `dedup
    # erase` does.
    eraser = LakeEraser.from_settings(settings)
    app = create_app(with_reports(settings).adjudication, engine, eraser=eraser)
    host, port = settings.adjudication.host, settings.adjudication.port
    console.print(
        f"review service on http://{'localhost' if host == '127.0.0.1' else host}:{port}/"
    )
    if announce:
        console.print(announce)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)


@review_app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on.")] = None,
    migrate: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Bring the database schema up first.")
    ] = True,
    config: ConfigOption = None,
    lake: LakeOption = None,
) -> None:
    """Run the review service (adjudication queue, web UI, JSON API, /metrics)."""
    settings = settings_from(config, lake)
    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if overrides:
        settings = settings.model_copy(
            update={"adjudication": settings.adjudication.model_copy(update=overrides)}
        )
    serve_review(settings, migrate)


@review_app.command("migrate")
def migrate_database(config: ConfigOption = None, lake: LakeOption = None) -> None:
    """Bring the review database's schema to the current migration, without serving (a
    deployment's step before its `dedup serve --no-migrate` replicas start)."""
    from dedup.adjudication import database

    engine = _engine(settings_from(config, lake), migrate=True)
    database.require_current(engine)
    console.print("the review database is at the current migration")


@review_app.command()
def enqueue(
    batch_id: Annotated[str, typer.Option("--batch-id", help="The matched batch to review.")],
    batch_dir: Annotated[
        Path | None,
        typer.Option("--batch-dir", help="The batch folder, to show adjudicators the photos."),
    ] = None,
    config: ConfigOption = None,
    lake: LakeOption = None,
) -> None:
    """Put a matched batch's candidates into the review queue (once; a re-run adds nothing)."""
    from pipelines.cli.batch import run_job
    from pipelines.lake.batch_run import BatchRun
    from pipelines.review_feed import enqueue_report

    run = BatchRun(batch_id, settings_from(config, lake))
    run_job(run, "enqueue", lambda: enqueue_report(run, batch_dir))


def add_user(
    settings: Settings, username: str, roles: str, password: str, display_name: str | None
) -> str:
    from dedup.adjudication import operations
    from dedup.adjudication.access import Actor, Role, parse_roles
    from dedup.adjudication.context import opened

    try:
        wanted = parse_roles(roles)  # refused before the database is touched
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    with opened(settings) as context:
        cli = Actor.local("cli", Role.ADMIN)
        return operations.create_user(context, cli, username, password, wanted, display_name)


@users_app.command("add")
def users_add(
    username: str,
    roles: Annotated[
        str, typer.Option("--roles", help="Comma-separated: operator, adjudicator, ...")
    ],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    display_name: Annotated[str | None, typer.Option("--name")] = None,
    config: ConfigOption = None,
) -> None:
    """Create an account; prints its TOTP secret once, to enrol in an authenticator app."""
    from dedup.adjudication.credentials import totp_uri

    settings = settings_from(config)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    secret = add_user(settings, username, roles, password, display_name)
    console.print(f"created {username}; TOTP secret (shown once): {secret}")
    console.print(totp_uri(secret, username))


@users_app.command("token")
def users_token(
    username: str,
    label: Annotated[str, typer.Option("--label", help="What the token is for.")] = "pipeline",
    config: ConfigOption = None,
) -> None:
    """Issue a bearer API token for a service account (printed once)."""
    from dedup.adjudication import operations
    from dedup.adjudication.access import Actor, Role
    from dedup.adjudication.context import opened

    with opened(settings_from(config)) as context:
        cli = Actor.local("cli", Role.ADMIN)
        token = operations.issue_api_token(context, cli, username, label)
    console.print(token)


@users_app.command("deactivate")
def users_deactivate(username: str, config: ConfigOption = None) -> None:
    """Turn an account off (someone leaves): no more logins; its sessions and tokens end."""
    from dedup.adjudication import operations
    from dedup.adjudication.access import Actor, Role
    from dedup.adjudication.context import opened

    with opened(settings_from(config)) as context:
        ended = operations.deactivate_user(context, Actor.local("cli", Role.ADMIN), username)
    console.print(f"{username} deactivated; {ended} sessions ended")


@users_app.command("totp")
def users_totp(secret: str) -> None:
    """Print the current code of a TOTP secret (a software authenticator, for demos and tests)."""
    from dedup.adjudication.credentials import totp_now

    console.print(totp_now(secret.strip().upper(), datetime.now(UTC)))


@audit_app.command("verify")
def audit_verify(
    head: Annotated[
        str | None,
        typer.Option("--head", help="SEQ:HASH recorded earlier, to prove the tail too."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check every entry of the audit chain; exit 1 naming the first entry that fails."""
    from dedup.adjudication import audit_store, database

    settings = settings_from(config)
    engine = _engine(settings, migrate=False)
    database.require_current(engine)
    expected = None
    if head:
        seq, _, digest = head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise ConfigError("--head is SEQ:HASH, as printed by a previous verification")
        expected = (int(seq), digest)
    with database.sessions(engine)() as db:
        check = audit_store.verify_log(db, expected)
        stored = audit_store.stored_head(db)
    if not check.ok:
        broken = f" at entry {check.first_bad_seq}: {check.problem}"
        console.print(Text.assemble(("audit chain broken", "bold red"), broken))
        raise typer.Exit(code=1)
    console.print(f"audit chain verified: {check.entries} entries")
    if stored is not None:
        console.print(f"head (keep it elsewhere; pass it as --head later): {stored[0]}:{stored[1]}")
