"""Erasing one enrollment never splits an identity: its links go, bridges join the
enrollments it joined, and only an identity it founded is renamed (after its earliest
remaining member)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dedup.matching.identities import (
    Link,
    assign,
    bridge,
    links_after_erasure,
    renamed_by_erasure,
)

ORDER = [f"e{i}" for i in range(7)]


def groups(assignment: dict[str, str]) -> set[frozenset[str]]:
    by_identity: dict[str, set[str]] = {}
    for enrollment, identity in assignment.items():
        by_identity.setdefault(identity, set()).add(enrollment)
    return {frozenset(members) for members in by_identity.values()}


def test_the_neighbours_of_the_erased_are_linked_to_the_earliest_of_them() -> None:
    # e3 joined e1, e5 and e6 (a star): each of the others is bridged to e1.
    links = [Link("d1", "e3", "e1"), Link("d2", "e5", "e3"), Link("d3", "e6", "e3")]
    assert bridge(links, "e3", ORDER) == [
        Link("erasure:e3", "e5", "e1"),
        Link("erasure:e3", "e6", "e1"),
    ]
    after = assign([e for e in ORDER if e != "e3"], links_after_erasure(links, "e3", ORDER))
    assert after["e5"] == after["e6"] == "e1"


def test_an_identity_the_erased_founded_takes_its_earliest_remaining_members_id() -> None:
    links = [Link("d1", "e2", "e0"), Link("d2", "e4", "e0")]
    before = assign(ORDER, links)
    rest = [e for e in ORDER if e != "e0"]
    after = assign(rest, links_after_erasure(links, "e0", ORDER))
    assert renamed_by_erasure(before, after, "e0") == "e2"
    assert after["e2"] == after["e4"] == "e2"


def test_an_identity_it_did_not_found_keeps_its_id() -> None:
    links = [Link("d1", "e2", "e0"), Link("d2", "e4", "e2")]
    before = assign(ORDER, links)
    after = assign([e for e in ORDER if e != "e2"], links_after_erasure(links, "e2", ORDER))
    assert renamed_by_erasure(before, after, "e2") is None
    assert after["e0"] == after["e4"] == "e0"


def test_an_enrollment_alone_bridges_nothing() -> None:
    assert bridge([Link("d1", "e2", "e0")], "e5", ORDER) == []


edges = st.lists(
    st.tuples(st.sampled_from(ORDER), st.sampled_from(ORDER)).filter(lambda p: p[0] != p[1]),
    max_size=12,
)


@given(edges, st.sampled_from(ORDER))
def test_erasing_one_member_never_splits_a_group_nor_touches_the_others(
    pairs: list[tuple[str, str]], erased: str
) -> None:
    links = [Link(f"d{i}", a, b) for i, (a, b) in enumerate(pairs)]
    before = assign(ORDER, links)
    rest = [e for e in ORDER if e != erased]
    kept = links_after_erasure(links, erased, ORDER)
    after = assign(rest, kept)
    assert all(erased not in (link.probe, link.duplicate_of) for link in kept)
    # the same groups, less the erased member
    expected = {g - {erased} for g in groups(before)} - {frozenset()}
    assert groups(after) == expected
    # a group without the erased member keeps its members' ids; the erased one's group keeps
    # its id unless the erased founded it, then it is the rename
    renamed = renamed_by_erasure(before, after, erased)
    for enrollment in rest:
        if before[enrollment] != before[erased]:
            assert after[enrollment] == before[enrollment]
        elif before[erased] == erased:
            assert (
                after[enrollment]
                == renamed
                == min((e for e in rest if before[e] == erased), key=ORDER.index)
            )
        else:
            assert after[enrollment] == before[enrollment]
    # erasing again (a re-run) bridges nothing more
    assert links_after_erasure(kept, erased, ORDER) == kept
