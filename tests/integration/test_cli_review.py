"""The review commands: accounts from the command line, clear refusals, audit entries."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dedup.adjudication import audit_store, database
from dedup.adjudication.credentials import totp_now
from dedup.adjudication.service import create_app
from dedup.settings import AdjudicationSettings
from pipelines.cli import app

runner = CliRunner()


def env(tmp_path: Path) -> dict[str, str]:
    return {"DEDUP_ADJUDICATION__DATABASE_URL": f"sqlite:///{tmp_path / 'review.sqlite'}"}


def test_an_account_made_on_the_command_line_can_log_in(tmp_path: Path) -> None:
    made = runner.invoke(
        app,
        ["users", "add", "zoe", "--roles", "adjudicator,supervisor", "--password-stdin"],
        input="a long enough password\n",
        env=env(tmp_path),
    )
    assert made.exit_code == 0, made.output
    secret = re.search(r"TOTP secret \(shown once\): ([A-Z2-7]+)", made.output)
    assert secret is not None
    code = runner.invoke(app, ["users", "totp", secret.group(1)])
    assert code.stdout.strip() == totp_now(secret.group(1), datetime.now(UTC))

    engine = database.connect(env(tmp_path)["DEDUP_ADJUDICATION__DATABASE_URL"])
    client = TestClient(create_app(AdjudicationSettings(), engine), base_url="https://t")
    login = {"username": "zoe", "password": "a long enough password",
             "totp": totp_now(secret.group(1), datetime.now(UTC))}  # fmt: skip
    answer = client.post("/api/v1/login", json=login)
    assert answer.status_code == 200 and answer.json()["roles"] == ["adjudicator", "supervisor"]
    with database.sessions(engine)() as db:
        [created] = audit_store.search(db, action="user.create")
    assert created.target == "user:zoe" and created.details == {"roles": "adjudicator,supervisor"}

    # Deactivated, the account's live session ends and it cannot log in again.
    client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    assert client.post("/api/v1/cases/claim").status_code == 204
    gone = runner.invoke(app, ["users", "deactivate", "zoe"], env=env(tmp_path))
    assert gone.exit_code == 0 and "1 sessions ended" in gone.output
    assert client.post("/api/v1/cases/claim").status_code == 401
    later = {**login, "totp": totp_now(secret.group(1), datetime.now(UTC) + timedelta(seconds=30))}
    assert client.post("/api/v1/login", json=later).status_code == 401


def test_bad_accounts_are_refused_with_a_reason(tmp_path: Path) -> None:
    def add(name: str, roles: str, password: str) -> str:
        done = runner.invoke(
            app,
            ["users", "add", name, "--roles", roles, "--password-stdin"],
            input=password + "\n",
            env=env(tmp_path),
        )
        assert done.exit_code == 2
        return done.output

    assert "unknown role 'judge'" in add("zoe", "judge", "a long enough password")
    assert "at least 12 characters" in add("zoe", "auditor", "short")
    assert "1-128 letters" in add("zo e", "auditor", "a long enough password")


def test_an_unmigrated_database_is_not_served(tmp_path: Path) -> None:
    done = runner.invoke(app, ["serve", "--no-migrate"], env=env(tmp_path))
    engine = database.connect(env(tmp_path)["DEDUP_ADJUDICATION__DATABASE_URL"])
    head = database.head_revision(engine)  # the newest migration this code ships
    engine.dispose()
    said = " ".join(done.output.split())
    assert head and done.exit_code == 2 and f"needs migration {head}" in said
    assert "`dedup migrate`" in done.output


def test_migrate_brings_the_database_to_the_current_migration(tmp_path: Path) -> None:
    for _ in range(2):  # a second run (the next release's hook) finds nothing to do
        done = runner.invoke(app, ["migrate"], env=env(tmp_path))
        assert done.exit_code == 0, done.output
        assert "at the current migration" in done.output
    engine = database.connect(env(tmp_path)["DEDUP_ADJUDICATION__DATABASE_URL"])
    database.require_current(engine)


def test_enqueue_without_a_match_run_says_what_to_do(tmp_path: Path) -> None:
    done = runner.invoke(
        app, ["enqueue", "--batch-id", "b1", "--lake", str(tmp_path / "lake")], env=env(tmp_path)
    )
    assert done.exit_code == 2 and "run `dedup match` first" in done.output
