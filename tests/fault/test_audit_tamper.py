"""Editing or deleting an audit row makes `dedup audit verify` fail and name the row, on
SQLite and PostgreSQL; an untouched log verifies and prints its head."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from pipelines.cli import app
from tests.review_support import ReviewWorld, batch_payload

runner = CliRunner()


def busy_log(world: ReviewWorld) -> None:
    """A few dozen real entries: logins, an import, claims, views, judgements, a refusal."""
    world.client("operator").post("/api/v1/batches/b1/candidates", json=batch_payload(3))
    for name in ("ann", "bob"):
        client = world.client(name)
        while (answer := client.post("/api/v1/cases/claim")).status_code == 200:
            case = answer.json()
            client.get(f"/cases/{case['case_id']}")
            body = {"lease_token": case["lease_token"], "outcome": "not_duplicate"}
            client.post(f"/api/v1/cases/{case['case_id']}/judgement", json=body)
        client.get("/api/v1/decisions")  # refused: adjudicators do not export


def verify(engine: Engine, *args: str) -> Any:
    url = engine.url.render_as_string(hide_password=False)
    return runner.invoke(
        app, ["audit", "verify", *args], env={"DEDUP_ADJUDICATION__DATABASE_URL": url}
    )


def test_an_untouched_log_verifies_and_prints_its_head(world: ReviewWorld) -> None:
    busy_log(world)
    result = verify(world.engine)
    assert result.exit_code == 0, result.output
    assert "audit chain verified" in result.output
    with world.engine.connect() as connection:
        seq, digest = connection.execute(text("SELECT seq, hash FROM audit_head")).one()
    assert f"{seq}:{digest}" in result.output
    assert verify(world.engine, "--head", f"{seq}:{digest}").exit_code == 0


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 7", "entry 7 was changed"),
        ("UPDATE audit_log SET target = 'case:other' WHERE seq = 12", "entry 12 was changed"),
        ("DELETE FROM audit_log WHERE seq = 9", "entry 9 is missing"),
        (
            "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",
            "up to the recorded head",
        ),
    ],
)
def test_an_edited_or_deleted_row_fails_verification_and_is_named(
    world: ReviewWorld, tamper: str, named: str
) -> None:
    busy_log(world)
    with world.engine.begin() as connection:
        connection.execute(text(tamper))
    result = verify(world.engine)
    assert result.exit_code == 1
    assert "audit chain broken" in result.output and named in result.output


def test_a_truncated_log_with_a_rewritten_head_fails_against_a_kept_head(
    world: ReviewWorld,
) -> None:
    busy_log(world)
    with world.engine.connect() as connection:
        seq, digest = connection.execute(text("SELECT seq, hash FROM audit_head")).one()
    with world.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq >= :s"), {"s": seq - 2})
        previous = connection.execute(
            text("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        ).one()
        connection.execute(
            text("UPDATE audit_head SET seq = :s, hash = :h"),
            {"s": previous[0], "h": previous[1]},
        )
    assert verify(world.engine).exit_code == 0  # consistent on its own...
    caught = verify(world.engine, "--head", f"{seq}:{digest}")
    assert caught.exit_code == 1 and f"recorded head {seq}" in caught.output
