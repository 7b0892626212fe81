"""``dedup serve``, ``dedup enqueue``, ``dedup users ...`` and ``dedup audit verify``: the review
service and what operators do around it."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from dedup.cli_output import console, fail
from dedup.errors import ConfigError, DedupError
from dedup.settings import Settings

users_app = typer.Typer(help="Review-service accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="The review service's audit log.", no_args_is_help=True)


def _engine(settings: Settings, migrate: bool = True) -> Any:
    from dedup.adjudication import database

    engine = database.connect(settings.adjudication_database_url())
    if migrate:
        database.migrate(engine)
    return engine


def serve_review(settings: Settings, migrate: bool, announce: str | None = None) -> None:
    """Run the service in the foreground until interrupted (Ctrl-C)."""
    import uvicorn

    from dedup.adjudication.service import create_app

    engine = _engine(settings, migrate)
    app = create_app(settings.adjudication, engine)
    host, port = settings.adjudication.host, settings.adjudication.port
    console.print(
        f"review service on http://{'localhost' if host == '127.0.0.1' else host}:{port}/"
    )
    if announce:
        console.print(announce)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)


def serve_command(
    settings: Settings,
    host: str | None,
    port: int | None,
    migrate: bool,
) -> None:
    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if overrides:
        settings = settings.model_copy(
            update={"adjudication": settings.adjudication.model_copy(update=overrides)}
        )
    try:
        serve_review(settings, migrate)
    except DedupError as error:
        raise fail(error) from error


def enqueue_command(settings: Settings, batch_id: str, batch_dir: Path | None) -> None:
    from pipelines.review_feed import enqueue_batch

    try:
        result = enqueue_batch(settings, batch_id, batch_dir)
    except DedupError as error:
        raise fail(error) from error
    print_enqueue(result)


def print_enqueue(result: Any) -> None:
    if result.already_imported:
        console.print(f"batch {result.batch_id} was already in the review queue: nothing added")
        return
    console.print(
        f"review queue: {result.cases_created} cases from batch {result.batch_id} "
        f"({result.cases_skipped} probes already had a case; "
        f"{result.catch_trials_seeded} catch trials seeded)"
    )


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
    config: Annotated[Path | None, typer.Option("--config")] = None,
) -> None:
    """Create an account; prints its TOTP secret once, to enrol in an authenticator app."""
    from dedup.adjudication.credentials import totp_uri
    from dedup.settings import load_settings

    try:
        settings = load_settings(config)
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        secret = add_user(settings, username, roles, password, display_name)
    except DedupError as error:
        raise fail(error) from error
    console.print(f"created {username}; TOTP secret (shown once): {secret}")
    console.print(totp_uri(secret, username), soft_wrap=True)


@users_app.command("token")
def users_token(
    username: str,
    label: Annotated[str, typer.Option("--label", help="What the token is for.")] = "pipeline",
    config: Annotated[Path | None, typer.Option("--config")] = None,
) -> None:
    """Issue a bearer API token for a service account (printed once)."""
    from dedup.adjudication import operations
    from dedup.adjudication.access import Actor, Role
    from dedup.adjudication.context import opened
    from dedup.settings import load_settings

    try:
        with opened(load_settings(config)) as context:
            cli = Actor.local("cli", Role.ADMIN)
            token = operations.issue_api_token(context, cli, username, label)
    except DedupError as error:
        raise fail(error) from error
    console.print(token, soft_wrap=True)


@users_app.command("deactivate")
def users_deactivate(
    username: str, config: Annotated[Path | None, typer.Option("--config")] = None
) -> None:
    """Turn an account off (someone leaves): no more logins; its sessions and tokens end."""
    from dedup.adjudication import operations
    from dedup.adjudication.access import Actor, Role
    from dedup.adjudication.context import opened
    from dedup.settings import load_settings

    try:
        with opened(load_settings(config)) as context:
            ended = operations.deactivate_user(context, Actor.local("cli", Role.ADMIN), username)
    except DedupError as error:
        raise fail(error) from error
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
    config: Annotated[Path | None, typer.Option("--config")] = None,
) -> None:
    """Check every entry of the audit chain; exit 1 naming the first entry that fails."""
    from dedup.adjudication import audit_store, database
    from dedup.settings import load_settings

    try:
        settings = load_settings(config)
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
    except DedupError as error:
        raise fail(error) from error
    if not check.ok:
        console.print(f"[bold red]audit chain broken[/] at entry {check.first_bad_seq}: "
                      f"{check.problem}")  # fmt: skip
        raise typer.Exit(code=1)
    console.print(f"audit chain verified: {check.entries} entries")
    if stored is not None:
        console.print(f"head (keep it elsewhere; pass it as --head later): {stored[0]}:{stored[1]}",
                      soft_wrap=True)  # fmt: skip
