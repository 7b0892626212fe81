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


# ---------------------------------------------------------------- erasure


def erasure_cause(erased: str) -> str:
    """The ``cause`` (and decision) of the links and identity events an erasure makes."""
    return f"erasure:{erased}"


def bridge(links: Iterable[Link], erased: str, order: Sequence[str]) -> list[Link]:
    """The links that keep ``erased``'s identity whole once its own links are gone: each
    remaining neighbour of ``erased`` linked to the earliest of them in ``order``.

    One capture erased never splits a person into several identities: every part that hung
    together only through ``erased`` holds one of its neighbours, and the neighbours are
    joined here. The links are named after the erasure (``erasure:<id>``), so making them
    again (a re-run) gives the same links.

    >>> bridge([Link("d1", "b", "a"), Link("d2", "c", "a")], "a", ["a", "b", "c"])
    [Link(decision='erasure:a', probe='c', duplicate_of='b')]
    """
    position = {enrollment: index for index, enrollment in enumerate(order)}
    neighbours = {
        other
        for link in links
        if erased in (link.probe, link.duplicate_of)
        for other in (link.probe, link.duplicate_of)
        if other != erased
    }
    unknown = sorted(n for n in neighbours if n not in position)
    if unknown:
        raise IdentityError(f"enrollment {erased!r} is linked to {unknown[0]!r}, never staged")
    ranked = sorted(neighbours, key=position.__getitem__)
    cause = erasure_cause(erased)
    return [Link(cause, other, ranked[0]) for other in ranked[1:]]


def links_after_erasure(links: Iterable[Link], erased: str, order: Sequence[str]) -> list[Link]:
    """The links in force once ``erased`` is erased: those not naming it, and the bridges
    (``bridge``) between the enrollments it joined. A bridge already in force is kept once."""
    listed = list(links)
    kept = [link for link in listed if erased not in (link.probe, link.duplicate_of)]
    return kept + [link for link in bridge(listed, erased, order) if link not in kept]


def renamed_by_erasure(
    before: Mapping[str, str], after: Mapping[str, str], erased: str
) -> str | None:
    """The id ``erased``'s identity goes by once it is erased, where that changes: only an
    identity that ``erased`` founded (its own id) is renamed, after its earliest remaining
    member, the one documented exception to "an identity id never changes" (an erased
    person's id is withdrawn). None where nothing is renamed (it founded no group).

    >>> renamed_by_erasure({"a": "a", "b": "a"}, {"b": "b"}, "a")
    'b'
    """
    if before.get(erased) != erased:
        return None
    members = [e for e, identity in before.items() if identity == erased and e != erased]
    names = {after[e] for e in members if e in after}
    if not names:
        return None
    if len(names) != 1:
        raise IdentityError(f"erasing {erased!r} would split its identity over {sorted(names)}")
    return names.pop()
