"""The audit chain: an edited, deleted, reordered or truncated entry is found and named."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from dedup.adjudication.audit_chain import ENTRY_FIELDS, GENESIS, AuditEntry, append, verify
from dedup.adjudication.tables import AuditRow
from dedup.errors import AdjudicationError
from tests.review_support import WRITTEN_ENTRIES

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def chain(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for i in range(n):
        entries.append(
            append(
                entries[-1] if entries else None,
                at=T0 + timedelta(seconds=i),
                actor=f"user{i % 3}",
                role="adjudicator",
                action="case.view" if i % 2 else "image.view",
                target=f"case/P{i}",
                client="127.0.0.1",
                details={"step": str(i)},
            )
        )
    return entries


def test_a_written_chain_verifies_and_links_each_entry_to_the_last() -> None:
    entries = chain(6)
    assert entries[0].prev_hash == GENESIS and entries[0].seq == 0
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    check = verify(entries, head=(entries[-1].seq, entries[-1].hash))
    assert check.ok and check.entries == 6 and check.first_bad_seq is None


@pytest.mark.parametrize(
    "field, value",
    [("actor", "someone-else"), ("outcome", "refused"), ("details", {"step": "99"})],
)
def test_an_edited_entry_is_named(field: str, value: Any) -> None:
    entries = chain(6)
    entries[3] = dataclasses.replace(entries[3], **{field: value})
    check = verify(entries)
    assert not check.ok and check.first_bad_seq == 3 and "changed" in (check.problem or "")


def test_an_edited_entry_with_its_hash_recomputed_breaks_the_next_link() -> None:
    entries = chain(6)
    forged = dataclasses.replace(entries[2], actor="mallory")
    entries[2] = dataclasses.replace(forged, hash=forged.computed_hash())
    check = verify(entries)
    assert check.first_bad_seq == 3 and "does not follow" in (check.problem or "")


def test_a_deleted_entry_is_named() -> None:
    entries = chain(6)
    del entries[2]
    check = verify(entries)
    assert check.first_bad_seq == 2 and "missing" in (check.problem or "")


def test_deleting_the_newest_entries_is_caught_against_the_recorded_head() -> None:
    entries = chain(6)
    head = (entries[-1].seq, entries[-1].hash)
    assert verify(entries[:4]).ok  # the chain alone cannot tell
    check = verify(entries[:4], head=head)
    assert check.first_bad_seq == 4 and "recorded head 5" in (check.problem or "")


def test_times_are_kept_in_utc_and_details_are_short_texts_only() -> None:
    local = datetime(2026, 11, 23, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    entry = append(
        None, at=local, actor="a", role="auditor", action="login", target="user/a", client="::1"
    )
    assert entry.at == T0
    with pytest.raises(AdjudicationError, match="time zone"):
        append(
            None, at=datetime(2026, 1, 1), actor="a", role="r", action="x", target="t", client="c"
        )
    with pytest.raises(AdjudicationError, match="short text"):
        append(
            None, at=T0, actor="a", role="r", action="x", target="t", client="c",
            details={"template": "0.1," * 100},
        )  # fmt: skip


def test_entries_written_before_hash_as_they_did() -> None:
    # The hash is the chain: a change to what it covers would break every stored chain.
    earlier = [AuditEntry(**fields) for fields in WRITTEN_ENTRIES]
    assert [e.computed_hash() for e in earlier] == [e.hash for e in earlier]
    assert verify(earlier, head=(1, earlier[1].hash)).ok
    given = {k: v for k, v in WRITTEN_ENTRIES[0].items() if k not in ("seq", "prev_hash", "hash")}
    again = append(None, **given)
    assert again == earlier[0]
    assert json.dumps(again.content(), sort_keys=True, separators=(",", ":")) == (
        '{"action":"case.judge","actor":"ann","at":"2026-11-23T09:00:00+00:00",'
        '"client":"10.0.0.7","details":{"duplicate_of":"E-2","outcome":"duplicate",'
        '"state":"awaiting_second_review"},"outcome":"ok","prev_hash":"' + GENESIS + '",'
        '"role":"adjudicator","seq":0,"target":"case:0123abcd"}'
    )


def test_the_audit_table_has_a_column_per_entry_field_in_order() -> None:
    assert tuple(AuditRow.__table__.columns.keys()) == ENTRY_FIELDS
    assert ENTRY_FIELDS[-1] == "hash" and "hash" not in AuditEntry(**WRITTEN_ENTRIES[0]).content()
