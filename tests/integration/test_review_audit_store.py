"""The audit chain in the database: a chain written by earlier code still verifies and grows,
on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from sqlalchemy import Engine, insert, update

from dedup.adjudication import audit_store, database
from dedup.adjudication.access import Actor, Role
from dedup.adjudication.tables import AuditHead, AuditRow
from tests.review_support import WRITTEN_ENTRIES


def test_a_chain_written_before_verifies_reads_back_and_grows(review_engine: Engine) -> None:
    rows = [{**e, "details": json.dumps(e["details"], sort_keys=True)} for e in WRITTEN_ENTRIES]
    with review_engine.begin() as connection:  # as stored rows, not through the store's code
        connection.execute(insert(AuditRow), rows)
        connection.execute(update(AuditHead).values(seq=1, hash=rows[1]["hash"]))
    sessions = database.sessions(review_engine)
    with sessions() as db:
        assert audit_store.verify_log(db).ok
        read = list(audit_store.entries(db))
    assert [e.hash for e in read] == [e["hash"] for e in WRITTEN_ENTRIES]
    assert [dict(e.details) for e in read] == [e["details"] for e in WRITTEN_ENTRIES]
    assert [e.as_dict()["at"] for e in read] == [e["at"].isoformat() for e in WRITTEN_ENTRIES]

    actor = Actor("sue", frozenset({Role.SUPERVISOR}), "::1")
    with sessions() as db, db.begin():
        added = audit_store.record(db, actor, "case.view", "case:0123abcd")
    assert added.seq == 2 and added.prev_hash == WRITTEN_ENTRIES[1]["hash"]
    with sessions() as db:
        check = audit_store.verify_log(db)
    assert check.ok and check.entries == 3
