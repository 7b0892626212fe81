"""Identities as a union-find over confirmed duplicate links: ids never change once issued,
merges and splits are named, and the answer does not depend on the order decisions arrive."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dedup.matching.identities import (
    IdentityChange,
    IdentityError,
    Link,
    assign,
    changes,
    links_in_force,
)

ORDER = ["e0", "e1", "e2", "e3", "e4"]


def groups(assignment: dict[str, str]) -> set[frozenset[str]]:
    by_identity: dict[str, set[str]] = {}
    for enrollment, identity in assignment.items():
        by_identity.setdefault(identity, set()).add(enrollment)
    return {frozenset(members) for members in by_identity.values()}


def test_with_no_link_every_enrollment_is_its_own_identity() -> None:
    assert assign(ORDER, []) == {e: e for e in ORDER}


def test_a_chain_of_duplicates_is_one_identity_named_by_its_earliest_member() -> None:
    # A third capture found against the second: all three are one person, named by the first.
    links = [Link("d1", "e2", "e0"), Link("d2", "e4", "e2")]
    after = assign(ORDER, links)
    assert {after[e] for e in ("e0", "e2", "e4")} == {"e0"}
    assert after["e1"] == "e1" and after["e3"] == "e3"


def test_a_decision_joining_two_identities_is_a_merge_into_the_earlier() -> None:
    before = assign(ORDER, [Link("d1", "e1", "e0"), Link("d2", "e3", "e2")])
    after = assign(ORDER, [Link("d1", "e1", "e0"), Link("d2", "e3", "e2"), Link("d3", "e3", "e1")])
    assert set(after.values()) == {"e0", "e4"}
    assert changes(before, after) == [IdentityChange("merge", "e0", ("e2",))]


def test_a_decision_taken_back_splits_and_each_part_takes_back_its_own_id() -> None:
    applied = [Link("d1", "e1", "e0"), Link("d2", "e3", "e2"), Link("d3", "e3", "e1")]
    before = assign(ORDER, applied)
    after = assign(ORDER, links_in_force(applied, revoked=["d3"]))
    assert after == assign(ORDER, applied[:2])  # as if d3 had never been decided
    assert changes(before, after) == [IdentityChange("split", "e0", ("e2",))]


def test_new_enrollments_bring_their_own_identity_and_are_no_change() -> None:
    before = assign(ORDER[:3], [Link("d1", "e1", "e0")])
    after = assign(ORDER, [Link("d1", "e1", "e0")])
    assert changes(before, after) == []


def test_a_link_to_an_enrollment_never_staged_is_refused() -> None:
    with pytest.raises(IdentityError, match="'ghost', which no batch has staged"):
        assign(ORDER, [Link("d9", "e1", "ghost")])


pairs = st.lists(
    st.tuples(st.integers(0, len(ORDER) - 1), st.integers(0, len(ORDER) - 1)), max_size=8
)


def links_of(indexes: list[tuple[int, int]]) -> list[Link]:
    return [Link(f"d{n}", ORDER[a], ORDER[b]) for n, (a, b) in enumerate(indexes)]


@given(pairs, st.randoms(use_true_random=False))
def test_the_order_decisions_arrive_in_changes_nothing(
    indexes: list[tuple[int, int]], shuffler: random.Random
) -> None:
    links = links_of(indexes)
    shuffled = list(links)
    shuffler.shuffle(shuffled)
    assert assign(ORDER, shuffled) == assign(ORDER, links)
    assert assign(ORDER, links + links) == assign(ORDER, links)  # a decision applied twice


@given(pairs)
def test_groups_are_the_connected_components_and_each_is_named_by_its_earliest_member(
    indexes: list[tuple[int, int]],
) -> None:
    after = assign(ORDER, links_of(indexes))
    # Brute force: grow each enrollment's group over the links until nothing changes.
    expected: set[frozenset[str]] = set()
    for start in ORDER:
        group = {start}
        while True:
            grown = (
                group
                | {ORDER[b] for a, b in indexes if ORDER[a] in group}
                | {ORDER[a] for a, b in indexes if ORDER[b] in group}
            )
            if grown == group:
                break
            group = grown
        expected.add(frozenset(group))
    assert groups(after) == expected
    for members in expected:
        earliest = min(members, key=ORDER.index)
        assert {after[e] for e in members} == {earliest}


@given(pairs, pairs)
def test_an_identity_id_always_names_the_group_of_the_enrollment_it_was_issued_for(
    first: list[tuple[int, int]], second: list[tuple[int, int]]
) -> None:
    # Whatever is decided or taken back, an id is never reused for a group without its owner,
    # and no id is minted that is not some enrollment's own.
    for indexes in (first, second, first + second):
        after = assign(ORDER, links_of(indexes))
        for identity in after.values():
            assert after[identity] == identity  # the owner is in the group its id names
            assert identity in ORDER


@given(pairs, pairs)
def test_changes_name_every_merge_and_split_between_two_assignments(
    first: list[tuple[int, int]], second: list[tuple[int, int]]
) -> None:
    before, after = assign(ORDER, links_of(first)), assign(ORDER, links_of(second))
    found = changes(before, after)
    merged = {c.identity for c in found if c.kind == "merge"}
    split = {c.identity for c in found if c.kind == "split"}
    for identity in set(after.values()):
        sources = {before[e] for e, i in after.items() if i == identity}
        assert (identity in merged) == (len(sources) > 1)
    for identity in set(before.values()):
        targets = {after[e] for e, i in before.items() if i == identity}
        assert (identity in split) == (len(targets) > 1)
    if before == after:
        assert found == []


def test_every_pair_order_of_two_links_gives_one_answer() -> None:
    links = [Link("d1", "e2", "e0"), Link("d2", "e2", "e1")]
    answers = {tuple(sorted(assign(ORDER, list(p)).items())) for p in itertools.permutations(links)}
    assert len(answers) == 1
