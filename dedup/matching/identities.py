"""Identities: which enrollments are one person, as the adjudicators' decisions say.

Every staged enrollment is issued an identity id of its own when it is first seen (its
*own* id), in staging order. A decision that B is a duplicate of A links them; an identity is
a connected group of enrollments under the confirmed links (a union-find), and it carries the
own id of its earliest member. So:

- an identity id never changes once issued: it always names the group holding the enrollment
  it was issued for, and no id is ever minted twice or reused for another person;
- a decision that joins two identities is a **merge**: the later identity's id is absorbed
  into the earlier one's (and is recorded as absorbed, so a lookup of it still resolves);
- a decision taken back (a supervisor changing a decision already applied) removes its link;
  a group that falls apart is a **split**, and each part takes back the own id of its
  earliest member, which was issued before: nothing new is minted.

The grouping depends only on the staging order and the set of links in force, never on the
order in which decisions arrive, so a decision applied twice, or decisions applied over
several nights in any order, give one answer.

>>> before = assign(["a", "b", "c"], [])
>>> after = assign(["a", "b", "c"], [Link("d1", "c", "a")])
>>> after["c"], after["b"]
('a', 'b')
>>> [(c.kind, c.identity, c.others) for c in changes(before, after)]
[('merge', 'a', ('c',))]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dedup.errors import DedupError


class IdentityError(DedupError, ValueError):
    """A link names an enrollment the registry has not staged."""


@dataclass(frozen=True)
class Link:
    """A confirmed duplicate: ``probe`` is the same person as ``duplicate_of``. ``decision``
    names the decision that made it (a case's final judgement), so it is applied once."""

    decision: str
    probe: str
    duplicate_of: str


@dataclass(frozen=True)
class IdentityChange:
    """``merge``: ``others`` were absorbed into ``identity``; ``split``: ``identity`` lost
    the members now under ``others``."""

    kind: Literal["merge", "split"]
    identity: str
    others: tuple[str, ...]


def assign(order: Sequence[str], links: Iterable[Link]) -> dict[str, str]:
    """Each enrollment's identity: the own id (here, the enrollment id that owns it) of the
    earliest member of its group under ``links``. ``order`` is the staging order."""
    position = {enrollment: index for index, enrollment in enumerate(order)}
    parent = list(range(len(order)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]  # path halving
            index = parent[index]
        return index

    for link in links:
        for end in (link.probe, link.duplicate_of):
            if end not in position:
                raise IdentityError(
                    f"decision {link.decision!r} links {end!r}, which no batch has staged"
                )
        a, b = root(position[link.probe]), root(position[link.duplicate_of])
        if a != b:  # the earlier enrollment stays the root: its own id names the group
            parent[max(a, b)] = min(a, b)
    return {enrollment: order[root(index)] for index, enrollment in enumerate(order)}


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[IdentityChange]:
    """The merges and splits that turn one assignment into the next (enrollments new in
    ``after`` bring their own identity and are not a change), in a stable order."""
    joined: dict[str, set[str]] = defaultdict(set)
    parted: dict[str, set[str]] = defaultdict(set)
    for enrollment, identity in after.items():
        if enrollment in before:
            joined[identity].add(before[enrollment])
            parted[before[enrollment]].add(identity)
    # A merge gathers members of several earlier identities; a split scatters the members of
    # one earlier identity over several (a part that takes back its own id is not a merge).
    found = [
        IdentityChange("merge", identity, tuple(sorted(olds - {identity})))
        for identity, olds in joined.items()
        if len(olds) > 1
    ]
    found += [
        IdentityChange("split", identity, tuple(sorted(news - {identity})))
        for identity, news in parted.items()
        if len(news) > 1
    ]
    return sorted(found, key=lambda c: (c.kind, c.identity))


def links_in_force(decisions: Iterable[Link], revoked: Iterable[str]) -> list[Link]:
    """The links of every applied decision not since taken back (by its decision id)."""
    gone = set(revoked)
    return [link for link in decisions if link.decision not in gone]
