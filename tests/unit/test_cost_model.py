"""The cost model picks the faster engine per batch, never an IVF-PQ below its measured recall."""

from __future__ import annotations

import pytest

from dedup.gallery.recall_bands import MeasuredRecall, RecallPoint
from dedup.matching.cost_model import choose_engine, predict_seconds
from dedup.settings import SearchSettings


def measured(*points: tuple[int, int, int], us: float = 10.0) -> MeasuredRecall:
    """A gallery's measurement: (nprobe, pairs, found) in the band 0.95 to 0.96 and, below
    the genuine band, 100 pairs of which none was found."""
    return MeasuredRecall(
        "exact",
        2000,
        10,
        300,
        tuple(RecallPoint(n, (80, 95), (100, pairs), (0, found), us) for n, pairs, found in points),
    )


GOOD = measured((256, 1000, 990), (1024, 1000, 999), (4096, 1000, 1000))


def test_exact_wins_for_a_small_gallery_and_ivf_for_a_large_one() -> None:
    settings = SearchSettings()
    slow = measured((1024, 1000, 999), us=1000.0)  # 1 ms a query, measured on the gallery
    small = choose_engine(10_000, 100_000, 128, 1024, settings, recall=slow, band_floor=0.93)
    assert small.ivf_seconds == pytest.approx(10.0)  # the gallery's own speed, not the rate
    large = choose_engine(
        1_000, 1_000_000_000, 128, 131_072, settings, recall=GOOD, band_floor=0.93
    )
    assert large.nprobe == 1024 and large.measured_recall == 0.999
    assert small.engine == "exact" and "faster" in small.reason
    assert large.engine == "ivfpq" and "x faster" in large.reason
    assert large.exact_seconds > large.ivf_seconds


def test_a_gpu_makes_the_exact_sweep_win_where_the_cpu_would_not() -> None:
    settings = SearchSettings()
    cpu = choose_engine(
        1_000_000, 1_000_000_000, 128, 131_072, settings, recall=GOOD, band_floor=0.93
    )
    gpu = choose_engine(
        1_000_000, 1_000_000_000, 128, 131_072, settings, True, recall=GOOD, band_floor=0.93
    )
    assert cpu.engine == "ivfpq" and gpu.engine == "exact"


def test_ivf_runs_at_the_gallerys_operating_point_and_never_below_its_measured_recall() -> None:
    settings = SearchSettings(target_recall=0.995)
    big = (1_000, 1_000_000_000, 128, 131_072, settings)
    # The smallest measured nprobe that reaches the target in the genuine band.
    assert choose_engine(*big, recall=GOOD, band_floor=0.93).nprobe == 1024
    # The pairs below the band (impostors) do not count against it...
    assert choose_engine(*big, recall=GOOD, band_floor=0.93).engine == "ivfpq"
    # ...but with the band's floor under them, no nprobe reaches the target: exact.
    low = choose_engine(*big, recall=GOOD, band_floor=0.80)
    assert low.engine == "exact" and "no nprobe the gallery measured reaches" in low.reason
    # No measurement at all, or none in the band: exact.
    none = choose_engine(*big, recall=None, band_floor=0.93)
    assert none.engine == "exact" and "no recall measurement" in none.reason
    weak = measured((1024, 1000, 900))
    assert choose_engine(*big, recall=weak, band_floor=0.93).engine == "exact"
    # A configured nprobe is held to what the gallery measured at or below it.
    pinned = SearchSettings(nprobe=300)
    choice = choose_engine(1_000, 10**9, 128, 131_072, pinned, recall=GOOD, band_floor=0.93)
    assert choice.engine == "exact" and "recall 0.9900 < 0.9950" in choice.reason
    pinned = SearchSettings(nprobe=2000)
    choice = choose_engine(1_000, 10**9, 128, 131_072, pinned, recall=GOOD, band_floor=0.93)
    assert choice.engine == "ivfpq" and choice.nprobe == 2000 and choice.measured_recall == 0.999


def test_forced_engine_is_respected() -> None:
    choice = choose_engine(10, 10, 8, 1, SearchSettings(engine="ivfpq"))
    assert choice.engine == "ivfpq" and choice.reason == "set by search.engine"


def test_predictions_scale_with_batch_and_gallery() -> None:
    settings = SearchSettings()
    e1, i1 = predict_seconds(100, 10**6, 128, 4096, settings, gpu=False, nprobe=256)
    e2, i2 = predict_seconds(200, 2 * 10**6, 128, 4096, settings, gpu=False, nprobe=256)
    assert e2 == pytest.approx(4 * e1) and i2 > 1.9 * i1
