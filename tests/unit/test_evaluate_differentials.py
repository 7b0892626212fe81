"""Demographic differentials: the search never sees a group, and a planted 10x FMR
differential is found, flagged, and its interval holds the planted ratio."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dedup.evaluation import search as search_module
from dedup.evaluation.differentials import (
    GroupRates,
    column_differentials,
    ratio_interval,
    score_pairs,
    weighted_fmr,
)
from dedup.evaluation.labelled import read_evaluation_set
from dedup.evaluation.report import EvaluationOptions, evaluate
from dedup.evaluation.synthetic_groups import GroupedSynth, planted_fmr, write_labelled_set


def test_the_search_module_can_see_no_label() -> None:
    tree = ast.parse(Path(search_module.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "collections.abc", "dataclasses", "numpy", "numpy.typing"}
    for function in (search_module.search, search_module.pairs_at_or_above):
        names = set(inspect.signature(function).parameters)
        assert names <= {"probes", "gallery", "mates", "sizes", "chunk", "vectors", "threshold"}


def test_shuffled_group_labels_leave_every_search_result_unchanged(tmp_path: Path) -> None:
    write_labelled_set(tmp_path, subjects=300, seed=2)
    labels = pq.read_table(tmp_path / "labels.parquet")
    shuffled = labels.set_column(
        labels.column_names.index("group"),
        "group",
        [np.random.default_rng(0).permutation(labels["group"].to_pylist()).tolist()],
    )
    pq.write_table(shuffled, tmp_path / "shuffled.parquet")
    options = EvaluationOptions(gallery_sizes=(50, 100), bootstrap=5)
    first = evaluate(
        read_evaluation_set(tmp_path / "templates.parquet", tmp_path / "labels.parquet"), options
    )
    second = evaluate(
        read_evaluation_set(tmp_path / "templates.parquet", tmp_path / "shuffled.parquet"),
        options,
    )
    for key in ("fnir_at_fpir", "det", "cmc", "growth", "det_band", "group_threshold"):
        assert first[key] == second[key]
    assert first["groups"]["group"] != second["groups"]["group"]  # the labels did change


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[float, GroupRates, GroupRates]:
    """(planted ratio, C's rates, A's rates) of a set with a planted FMR differential.

    Group C's people share 0.0235 of their energy; A's none: C's FMR is 10x A's at the
    threshold, which is where 20,000 fresh group-A pairs put A's FMR at 0.002. The planted
    ratio is measured at it on 400,000 fresh independent impostor pairs of each group, apart
    from the set evaluated (a large sample, not an analytical value: the capture noise has no
    closed form here)."""
    tmp_path = tmp_path_factory.mktemp("planted")
    groups = {"A": 0.0, "C": 0.0235}
    synth = write_labelled_set(tmp_path, subjects=800, seed=4, groups=groups)
    reference = GroupedSynth(128, 4, groups)
    sample, _ = reference.templates(np.zeros(40_000, dtype=np.int64), 1, 77)
    threshold = float(np.quantile(np.einsum("ij,ij->i", sample[0::2], sample[1::2]), 0.998))
    ratio = planted_fmr(synth, "C", threshold, 400_000) / planted_fmr(
        synth, "A", threshold, 400_000
    )
    data = read_evaluation_set(tmp_path / "templates.parquet", tmp_path / "labels.parquet")
    pairs = score_pairs(data.vectors, data.subjects, threshold)
    found = column_differentials("group", data.groups["group"], pairs, threshold, factor=2.0)
    by_name = {g.group: g for g in found.groups}
    assert found.flagged == ["C"]
    assert found.fmr_max_over_geomean is not None
    assert found.fmr_max_over_geomean > 2
    # the counts behind the rates: every same-group pair of different subjects
    assert by_name["A"].impostor_pairs == 800 * 799 // 2 - 400
    # the unrelated column (age_band) is not flagged for a differential it does not carry
    age = column_differentials("age_band", data.groups["age_band"], pairs, threshold)
    assert age.flagged == [] or max(g.fmr for g in age.groups) < 2.5 * min(
        g.fmr for g in age.groups
    )
    return ratio, by_name["C"], by_name["A"]


def test_a_planted_differential_is_flagged_and_estimated(
    planted: tuple[float, GroupRates, GroupRates],
) -> None:
    ratio, c, a = planted
    assert 9 < ratio < 11  # the differential planted is 10x
    assert 0.7 < (c.fmr / a.fmr) / ratio < 1.3  # the estimate is near what was planted


def test_the_ratio_interval_holds_the_planted_ratio(
    planted: tuple[float, GroupRates, GroupRates],
) -> None:
    ratio, c, a = planted
    lo, hi = ratio_interval(c)
    assert lo <= ratio <= hi
    assert c.fmr_to_best == pytest.approx(c.fmr / a.fmr)
    assert ratio_interval(a) == pytest.approx((1.0, 1.0))  # the best group against itself
    # pairs that share templates are not independent: the subject bootstrap is wider than
    # the ratio of the two groups' Clopper-Pearson ends, which missed the planted ratio
    assert hi - lo > c.fmr_ci[1] / a.fmr_ci[0] - c.fmr_ci[0] / a.fmr_ci[1]


def test_the_bootstrap_without_redraws_counts_the_pairs_as_they_are() -> None:
    """Weights of one (every subject drawn once) must give the plain rates, and a subject
    drawn twice must count as two people: its pairs with others twice, its pairs with its own
    copy not at all."""
    rng = np.random.default_rng(3)
    v = rng.normal(size=(40, 5)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    subjects = np.arange(40) // 2
    labels = ["x" if s % 2 else "y" for s in subjects]
    pairs = score_pairs(v, subjects, 0.3)
    found = column_differentials("g", labels, pairs, 0.3)
    _, group = np.unique(np.array(labels, dtype=object), return_inverse=True)
    draws = weighted_fmr(group, 2, pairs, np.ones((1, 20)))
    assert draws[0].tolist() == pytest.approx([g.fmr for g in found.groups])
    twice = np.ones((1, 20))
    twice[0, 4] = 2.0  # subject 4 (group y) drawn twice
    hits = impostors = 0
    people = [s for s in range(20) for _ in range(int(twice[0, s]))]  # one entry a draw
    for x, sa in enumerate(people):
        for sb in people[x + 1 :]:
            if sa == sb or labels[2 * sa] != "y" or labels[2 * sb] != "y":
                continue
            for i in (2 * sa, 2 * sa + 1):
                for j in (2 * sb, 2 * sb + 1):
                    impostors += 1
                    hits += float(v[i] @ v[j]) >= 0.3
    assert weighted_fmr(group, 2, pairs, twice)[0, 1] == pytest.approx(hits / impostors)


def test_cross_group_matrix_counts_pairs_by_loops() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=(30, 6)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    subjects = np.arange(30) // 2
    labels = ["x" if i % 3 else "y" for i in range(30)]
    pairs = score_pairs(v, subjects, 0.2)
    found = column_differentials("g", labels, pairs, 0.2)
    names = ["x", "y"]
    for a in range(2):
        for b in range(2):
            hits = total = 0
            for i in range(30):
                for j in range(i + 1, 30):
                    if subjects[i] == subjects[j] or {labels[i], labels[j]} != {
                        names[a],
                        names[b],
                    }:
                        continue
                    total += 1
                    hits += float(v[i] @ v[j]) >= 0.2
            assert found.cross_fmr[a][b] == (hits / total if total else None)
