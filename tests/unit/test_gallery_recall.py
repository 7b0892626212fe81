"""Recall measured on the gallery's own templates, and the recipe chosen by it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dedup.errors import GalleryError
from dedup.evaluation.synthetic import KINDS, TemplateSynth
from dedup.gallery.layout import GalleryManifest
from dedup.gallery.reader import open_gallery
from dedup.gallery.recall import measure_recall
from dedup.gallery.recipe_choice import RecallTarget, RecipeChoice, TrialIndex, choose_recipe
from dedup.gallery.recipes import parse_factory
from dedup.gallery.training import train_index
from dedup.gallery.writer import add_batch, build_gallery

DIM = 64


def clustered(n: int, seed: int = 0) -> np.ndarray:
    model, _ = KINDS["clustered"]
    synth = TemplateSynth(DIM, seed, model)
    return synth.captures(synth.identities(0, n), 0)


def filled(factory: str, data: np.ndarray) -> TrialIndex:
    index = train_index(factory, parse_factory(factory, DIM), data, seed=0)
    index.add_with_ids(data, np.arange(len(data), dtype=np.int64))
    return TrialIndex(index, data)


def test_an_exhaustive_flat_index_finds_every_pair_in_every_band() -> None:
    data = clustered(3000)
    measured = measure_recall(filled("IVF16,Flat", data), [1, 16], shortlist=50, queries=400)
    full = measured.at(16)
    assert full is not None and full.pairs == full.found  # every list visited: nothing lost
    # Self matches are excluded, planted mates cover the bands up to 0.99.
    assert max(full.bands) <= 99 and sum(full.pairs) == 400 * 10
    assert full.recall_at_or_above(0.95) == 1.0
    one = measured.at(1)
    assert one is not None and (one.recall_at_or_above(0.0) or 0) < 1.0
    assert measured.at(0) is None and measured.at(1000) is full


def test_mates_only_counts_each_planted_querys_own_template() -> None:
    data = clustered(3000)
    measured = measure_recall(
        filled("IVF16,Flat", data), [16], shortlist=50, queries=300, method="mates"
    )
    point = measured.points[0]
    assert measured.method == "mates" and sum(point.pairs) == 300 == sum(point.found)


def test_the_recipe_that_reaches_the_target_is_chosen_and_the_others_are_shown() -> None:
    data = clustered(6000)
    goal = RecallTarget(floor_score=0.93, target=0.99, shortlist=20, k=10)
    choice = choose_recipe(data, 1, goal, candidates=["IVF32,PQ4x4fs", "IVF32,Flat"])
    assert choice.factory == "IVF32,Flat"
    poor, flat = choice.trials
    assert poor.nprobe_share is None and (poor.recall or 0) < 0.99
    assert flat.nprobe_share is not None and (flat.recall or 0) >= 0.99
    text = "\n".join(choice.lines())
    assert "IVF32,PQ4x4fs" in text and "never reached the target" in text
    # A gallery too small to try recipes on gets the default, and says why.
    small = choose_recipe(data[:500], 1, goal)
    assert small.factory.endswith("PQ32x4fsr") and "too few" in small.reason


def test_the_manifest_records_the_measurement_and_an_add_measures_again(tmp_path: Path) -> None:
    data = clustered(4000)
    names = [f"e{i}" for i in range(len(data))]
    choices: list[RecipeChoice] = []
    goal = RecallTarget(0.93, 0.99, 50, 10)
    built = build_gallery(
        tmp_path, names[:3000], data[:3000], model_id="m", batch_id="a", factory="IVF16,Flat",
        goal=goal, choices=choices,
    )  # fmt: skip
    assert choices[0].factory == "IVF16,Flat" and built.recall is not None
    assert built.recall.method == "exact"
    assert open_gallery(tmp_path).manifest.recall == built.recall  # through manifest.json
    assert built.recall.gallery_size == 3000
    # 30% more templates: measured again, on planted mates; 2.6% more: the measurement stands.
    grown = add_batch(tmp_path, "b", names[3000:3900], data[3000:3900], model_id="m", goal=goal)
    assert grown.recall is not None and grown.recall.method == "mates"
    assert grown.recall.gallery_size == 3900
    kept = add_batch(tmp_path, "c", names[3900:], data[3900:], model_id="m", goal=goal)
    assert kept.recall == grown.recall and open_gallery(tmp_path).manifest.recall == grown.recall
    # Corrupt counts in a manifest are refused, not trusted by the planner.
    document = json.loads(built.to_json())
    document["recall"]["points"][0]["found"][0] = 10**6
    with pytest.raises(GalleryError, match="more pairs found"):
        GalleryManifest.from_json(json.dumps(document))


def test_residual_codes_recover_what_plain_fast_scan_loses_on_look_alikes() -> None:
    """The finding this work answers: without residuals, fast-scan PQ spends its codes on the
    direction every face shares and loses near pairs that residual codes keep."""
    data = clustered(20_000, seed=3)
    plain = measure_recall(filled("IVF64,PQ16x4fs", data), [64], shortlist=20, queries=600)
    residual = measure_recall(filled("IVF64,PQ16x4fsr", data), [64], shortlist=20, queries=600)
    high_plain = plain.points[0].recall_at_or_above(0.9) or 0
    high_residual = residual.points[0].recall_at_or_above(0.9) or 0
    assert high_residual > high_plain
