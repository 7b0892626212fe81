"""The cost model picks the faster engine per batch, never an IVF-PQ below its measured recall."""

from __future__ import annotations

import pytest

from dedup.matching.cost_model import choose_engine, predict_seconds
from dedup.settings import SearchSettings


def test_exact_wins_for_a_small_gallery_and_ivf_for_a_large_one() -> None:
    settings = SearchSettings()
    small = choose_engine(10_000, 100_000, 128, 1024, settings)
    large = choose_engine(1_000, 1_000_000_000, 128, 131_072, settings)
    assert small.engine == "exact" and "faster" in small.reason
    assert large.engine == "ivfpq" and "x faster" in large.reason
    assert large.exact_seconds > large.ivf_seconds


def test_a_gpu_makes_the_exact_sweep_win_where_the_cpu_would_not() -> None:
    settings = SearchSettings()
    cpu = choose_engine(1_000_000, 1_000_000_000, 128, 131_072, settings, gpu=False)
    gpu = choose_engine(1_000_000, 1_000_000_000, 128, 131_072, settings, gpu=True)
    assert cpu.engine == "ivfpq" and gpu.engine == "exact"


def test_ivf_is_not_eligible_below_its_measured_recall() -> None:
    settings = SearchSettings(ivf_measured_recall=0.90, target_recall=0.995)
    choice = choose_engine(1_000, 1_000_000_000, 128, 131_072, settings)
    assert choice.engine == "exact" and "below the target" in choice.reason


def test_forced_engine_is_respected() -> None:
    choice = choose_engine(10, 10, 8, 1, SearchSettings(engine="ivfpq"))
    assert choice.engine == "ivfpq" and choice.reason == "set by search.engine"


def test_predictions_scale_with_batch_and_gallery() -> None:
    settings = SearchSettings()
    e1, i1 = predict_seconds(100, 10**6, 128, 4096, settings, gpu=False)
    e2, i2 = predict_seconds(200, 2 * 10**6, 128, 4096, settings, gpu=False)
    assert e2 == pytest.approx(4 * e1) and i2 > 1.9 * i1
