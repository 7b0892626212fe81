"""One threshold policy for the match job and `dedup gallery search`: an explicit threshold is
used as given, a target FPIR is calibrated where the gallery allows it, and where it does not
(no gallery yet, or too small) the configured threshold is used and the report says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from numpy.typing import NDArray
from typer.testing import CliRunner

from dedup.contracts.vectors import vector_table
from dedup.errors import ConfigError
from dedup.evaluation.synthetic import TemplateSynth
from dedup.gallery.reader import Gallery, open_gallery
from dedup.gallery.writer import build_gallery
from dedup.matching.batch_search import search_gallery
from dedup.matching.threshold_policy import (
    MIN_TAIL_TEMPLATES,
    gallery_tail,
    review_threshold,
)
from dedup.matching.thresholds import review_threshold_for
from dedup.settings import MatchingSettings, load_settings
from pipelines.cli import app

DIM, MODEL = 16, "synthetic-v1"
CONFIGURED = MatchingSettings().review_threshold

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def templates(start: int, count: int) -> NDArray[np.float32]:
    """Calibrated synthetic templates of persons ``start`` .. ``start + count - 1``."""
    synth = TemplateSynth(DIM, seed=0)
    return synth.captures(synth.identities(start, count), stream=start)


def built(root: Path, n: int) -> Path:
    names = [f"e{i:05d}" for i in range(n)]
    build_gallery(
        root,
        names,
        templates(0, n),
        model_id=MODEL,
        batch_id="initial",
        shards=2,
        factory="IVF8,PQ4",
        vector_dtype="float32",
    )
    return root


@pytest.fixture(scope="module")
def large_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Just large enough to fit an impostor tail on."""
    return built(tmp_path_factory.mktemp("large") / "gallery", MIN_TAIL_TEMPLATES + 500)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Too small to fit an impostor tail on."""
    return built(tmp_path_factory.mktemp("small") / "gallery", 600)


@pytest.fixture(scope="module")
def large(large_root: Path) -> Gallery:
    return open_gallery(large_root)


@pytest.fixture(scope="module")
def small(small_root: Path) -> Gallery:
    return open_gallery(small_root)


def test_an_explicit_threshold_is_used_as_given(large: Gallery) -> None:
    chosen = review_threshold(MatchingSettings(), large, threshold=0.95, target_fpir=None)
    assert (chosen.value, chosen.source, chosen.not_applied) == (0.95, "given", None)
    assert chosen.tail is not None  # still fitted, for the predicted false candidates
    assert chosen.sentence() == "review threshold 0.9500 (given)"


def test_neither_uses_the_configured_threshold(large: Gallery) -> None:
    chosen = review_threshold(MatchingSettings(), large, threshold=None, target_fpir=None)
    assert (chosen.value, chosen.source) == (CONFIGURED, "matching.review_threshold")
    assert chosen.not_applied is None


def test_a_target_fpir_is_calibrated_at_the_gallery_size(large: Gallery) -> None:
    chosen = review_threshold(MatchingSettings(), large, threshold=None, target_fpir=0.01)
    tail = gallery_tail(large)
    assert tail is not None
    assert chosen.value == review_threshold_for(0.01, large.size, tail)
    assert chosen.source == f"FPIR 0.01 at N = {large.size}" and chosen.not_applied is None
    assert chosen.target_fpir == 0.01
    assert chosen.sentence() == f"review threshold {chosen.value:.4f} (FPIR 0.01 at N = 2500)"


def test_a_target_fpir_without_a_gallery_falls_back_and_says_so() -> None:
    chosen = review_threshold(MatchingSettings(), None, threshold=None, target_fpir=0.001)
    assert (chosen.value, chosen.source, chosen.tail) == (
        CONFIGURED,
        "matching.review_threshold",
        None,
    )
    assert chosen.not_applied is not None and "no gallery yet" in chosen.not_applied
    assert chosen.sentence() == (
        f"review threshold {CONFIGURED:.4f} (matching.review_threshold); target FPIR 0.001 "
        "not applied: there is no gallery yet to calibrate it on, so the configured threshold "
        "was used"
    )


def test_a_target_fpir_on_a_gallery_too_small_falls_back_and_says_so(small: Gallery) -> None:
    chosen = review_threshold(MatchingSettings(), small, threshold=None, target_fpir=0.001)
    assert (chosen.value, chosen.tail) == (CONFIGURED, None)
    assert chosen.sentence() == (
        f"review threshold {CONFIGURED:.4f} (matching.review_threshold); target FPIR 0.001 "
        "not applied: the gallery's 600 live templates are too few to calibrate it on "
        "(2,000 needed), so the configured threshold was used"
    )


def test_contradictory_or_impossible_requests_are_refused(large: Gallery) -> None:
    with pytest.raises(ConfigError, match="not both"):
        review_threshold(MatchingSettings(), large, threshold=0.9, target_fpir=0.01)
    for target in (0.0, 1.0, 5.0):
        with pytest.raises(ConfigError, match="between 0 and 1"):
            review_threshold(MatchingSettings(), None, threshold=None, target_fpir=target)


def test_the_search_report_carries_the_sentence(small: Gallery) -> None:
    probes = templates(10_000, 20)
    ids = [f"p{i:02d}" for i in range(len(probes))]
    settings = load_settings(overrides={"search": {"engine": "exact"}})
    _, report = search_gallery(small, ids, probes, settings, target_fpir=0.001)
    chosen = review_threshold(settings.matching, small, threshold=None, target_fpir=0.001)
    assert report.threshold == CONFIGURED
    assert report.review == chosen and chosen.sentence() in report.lines()


def test_the_match_job_without_a_gallery_reports_the_sentence(tmp_path: Path) -> None:
    from pipelines.match import search_candidates

    probes = templates(20_000, 10)
    ids = [f"p{i:02d}" for i in range(len(probes))]
    settings = load_settings(overrides={"lake": str(tmp_path / "lake")})
    _, report, review = search_candidates(
        settings, tmp_path / "none", ids, probes, ray=False, threshold=None, target_fpir=0.001
    )
    assert report is None
    assert review.target_fpir is None  # not calibrated: the configured threshold was used
    assert "target FPIR 0.001 not applied: there is no gallery yet" in review.sentence()


def test_gallery_search_prints_the_sentence(small_root: Path, tmp_path: Path) -> None:
    probes = tmp_path / "probes.parquet"
    pq.write_table(vector_table([f"p{i:02d}" for i in range(20)], templates(30_000, 20)), probes)
    result = CliRunner().invoke(
        app,
        [
            "gallery",
            "search",
            "--gallery",
            str(small_root),
            "--probes",
            str(probes),
            "--out",
            str(tmp_path / "c.parquet"),
            "--target-fpir",
            "0.001",
        ],
    )
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert "target FPIR 0.001 not applied: the gallery's 600 live templates are too few" in printed


def test_dedup_match_prints_the_sentence_when_there_was_no_gallery() -> None:
    from pipelines.cli.output import console, print_report
    from pipelines.match import MatchReport

    sentence = "review threshold 0.9000 (matching.review_threshold); target FPIR 0.001 not applied"
    report = MatchReport(
        batch_id="night-1",
        model_id=MODEL,
        probes=2,
        candidates=0,
        with_candidates=0,
        unique=2,
        gallery_version=1,
        gallery_size=2,
        search=None,
        reused=False,
        seconds=0.1,
        metrics=[],
        threshold_sentence=sentence,
    )
    with console.capture() as captured:
        print_report(report)
    assert sentence in " ".join(captured.get().split())
