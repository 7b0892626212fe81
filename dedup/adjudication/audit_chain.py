"""The tamper-evident audit log: every entry carries the hash of the one before it.

An entry's hash is the sha256 of its canonical JSON (sorted keys, no spaces, UTC times in ISO
form) together with the previous entry's hash; the first entry follows ``GENESIS``. Editing an
entry breaks its own hash; deleting or reordering entries breaks the sequence or the link
of the next one. Deleting the newest entries leaves a shorter valid chain, so verification can
also be given the head (sequence and hash) recorded elsewhere, and then proves the tail too.

Entries hold who, role, action, object, time, client address and outcome, plus a few short
text details. Never a template, image bytes or a secret: details are short strings only, and
the service never puts such values in them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dedup.errors import AdjudicationError

GENESIS = "0" * 64
MAX_DETAIL_CHARS = 200


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the chain, and the one declaration of an entry's fields and their order.

    The rest follows these fields: the hash covers ``content()`` (every field but the hash),
    ``audit_store`` writes and reads the ``audit_log`` row field by field (``ENTRY_FIELDS``),
    search and export show ``as_dict()``, and a test holds the table's columns to them.
    """

    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str  # what was acted on: a case, an image, a user
    client: str
    outcome: str  # "ok" or "refused"
    details: Mapping[str, str] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def as_dict(self) -> dict[str, object]:
        """Every field, as JSON holds it: the time in UTC ISO form, details sorted by key."""
        return {name: _canonical(getattr(self, name)) for name in ENTRY_FIELDS}

    def content(self) -> dict[str, object]:
        """What the hash covers: every field but the hash itself."""
        return {name: value for name, value in self.as_dict().items() if name != "hash"}

    def computed_hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


ENTRY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AuditEntry))


def _canonical(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Mapping):
        return dict(sorted(value.items()))
    return value


def append(
    previous: AuditEntry | tuple[int, str] | None,
    *,
    at: datetime,
    actor: str,
    role: str,
    action: str,
    target: str,
    client: str,
    outcome: str = "ok",
    details: Mapping[str, str] | None = None,
) -> AuditEntry:
    """The next entry of the chain after ``previous``, an entry or its (seq, hash).

    None starts the chain.
    """
    if at.tzinfo is None:
        raise AdjudicationError("audit times must carry a time zone")
    after = (previous.seq, previous.hash) if isinstance(previous, AuditEntry) else previous
    checked = dict(details or {})
    for key, value in checked.items():
        if not isinstance(value, str) or len(value) > MAX_DETAIL_CHARS:
            raise AdjudicationError(
                f"audit detail {key!r} must be a short text (at most {MAX_DETAIL_CHARS} chars)"
            )
    entry = AuditEntry(
        seq=0 if after is None else after[0] + 1,
        at=at.astimezone(UTC),
        actor=actor,
        role=role,
        action=action,
        target=target,
        client=client,
        outcome=outcome,
        details=checked,
        prev_hash=GENESIS if after is None else after[1],
    )
    return dataclasses.replace(entry, hash=entry.computed_hash())


@dataclass(frozen=True)
class ChainCheck:
    entries: int
    first_bad_seq: int | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(entries: Iterable[AuditEntry], head: tuple[int, str] | None = None) -> ChainCheck:
    """Walk the chain in sequence order; name the first entry that does not hold."""
    expected_seq, expected_prev, count = 0, GENESIS, 0
    last: AuditEntry | None = None
    for entry in entries:
        count += 1
        if entry.seq != expected_seq:
            return ChainCheck(
                count, expected_seq, f"entry {expected_seq} is missing (found {entry.seq} next)"
            )
        if entry.prev_hash != expected_prev:
            return ChainCheck(
                count, entry.seq, f"entry {entry.seq} does not follow its predecessor"
            )
        if entry.computed_hash() != entry.hash:
            return ChainCheck(
                count, entry.seq, f"entry {entry.seq} was changed after it was written"
            )
        expected_seq, expected_prev, last = entry.seq + 1, entry.hash, entry
    if head is not None:
        seq, digest = head
        if last is None or (last.seq, last.hash) != (seq, digest):
            at = 0 if last is None else last.seq + 1
            return ChainCheck(
                count, at, f"entries after {at - 1} up to the recorded head {seq} are missing"
            )
    return ChainCheck(count, None, None)
