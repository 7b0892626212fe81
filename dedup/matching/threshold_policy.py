"""The one policy that sets a batch's review threshold, and says in a sentence what it did.

An operator asks in one of three ways, and each has one answer:

- an explicit threshold (``--threshold``): used as given;
- a target FPIR (``--target-fpir``): calibrated at the gallery's size on the impostor tail
  fitted from the gallery (``review_threshold_for``);
- neither: the configured ``matching.review_threshold``.

A target FPIR cannot always be calibrated: the first batch of a registry has no gallery yet,
and a gallery of fewer than ``MIN_TAIL_TEMPLATES`` live templates is too small to fit a tail
on. Then the configured threshold is used, and the sentence the report prints says that the
target was not applied and why. Asking for both a threshold and a target is refused.

Why fall back instead of refusing: a target FPIR is set once in the nightly schedule, and the
nights on which it cannot be calibrated are the registry's first ones. Refusing would fail
exactly those nights, or make the operator drop the flag and remember to restore it later;
the configured threshold is one the operator chose and the settings validated, the batches
are small, and every candidate goes to a person anyway. Once the gallery is large enough, the
same command calibrates without a change. What must not happen is what the match job used to
do on its first batch: drop the target without a word. Hence the sentence.

Example::

    chosen = review_threshold(settings.matching, gallery, threshold=None, target_fpir=0.01)
    chosen.value  # the threshold to search at
    chosen.sentence()  # "review threshold 0.9312 (FPIR 0.01 at N = 3300)"
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dedup.errors import ConfigError
from dedup.gallery.reader import Gallery
from dedup.matching.impostor_pairs import score_all_pairs
from dedup.matching.thresholds import ImpostorTail, review_threshold_for
from dedup.settings import MatchingSettings

# How much of the gallery the impostor tail is fitted on: every pair of TAIL_ROWS templates,
# the TAIL_KEEP highest of their scores kept exactly and TAIL_SAMPLE of the rest for the body
# (see dedup.matching.thresholds for how far below 1 / pairs the fit may be trusted).
TAIL_ROWS = 200_000
TAIL_KEEP = 200_000
TAIL_SAMPLE = 20_000_000
# Below this many live templates no tail is fitted (and no target FPIR calibrated).
MIN_TAIL_TEMPLATES = 2_000

CONFIGURED = "matching.review_threshold"


@dataclass(frozen=True)
class ReviewThreshold:
    """The threshold a batch is searched at, where it came from, and the tail it rests on."""

    value: float
    # "given", "matching.review_threshold", or "FPIR <target> at N = <gallery size>".
    source: str
    # Fitted on the gallery (for the predicted false candidates); None without one.
    tail: ImpostorTail | None
    # Why an asked-for target FPIR was not applied; None when nothing asked for was set aside.
    not_applied: str | None = None
    # The target FPIR the value was calibrated to; None for a given or configured threshold.
    target_fpir: float | None = None

    def sentence(self) -> str:
        """What the operator reads: the threshold, its source, and what was set aside."""
        line = f"review threshold {self.value:.4f} ({self.source})"
        return line if self.not_applied is None else f"{line}; {self.not_applied}"


def gallery_tail(gallery: Gallery, seed: int = 0) -> ImpostorTail | None:
    """The impostor score tail of the gallery, from every pair of up to ``TAIL_ROWS`` of its
    live templates, drawn at random.

    Gallery entries are distinct people (that is what deduplication keeps them), so pairs of
    them are non-mated. None when the gallery is too small to fit a tail.
    """
    live = gallery.ids_table()["gallery_id"].to_numpy()
    if len(live) < MIN_TAIL_TEMPLATES:
        return None
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(live, size=min(TAIL_ROWS, len(live)), replace=False))
    return tail_of_templates(np.asarray(gallery.vectors[rows], dtype=np.float32), seed)


def tail_of_templates(vectors: np.ndarray, seed: int = 0) -> ImpostorTail:
    """The impostor tail fitted on every pair of ``vectors`` (distinct people, unit length).

    Cost: ``n^2 / 2`` dot products in BLAS blocks. At 200,000 rows (2e10 pairs, 5.1e12 flops)
    69 s on two quiet x86_64 cores (sgemm at about 100 GFLOP/s, the scan of each block for
    kept scores a third more), where the 1e7 random pairs it replaced took 10 s; 23 s at
    100,000 rows, 0.2 s at 2,000. Memory: 100 MiB of rows, 64 MiB of block, 80 MiB of sample.
    """
    scores = score_all_pairs(vectors, keep=TAIL_KEEP, sample=TAIL_SAMPLE, seed=seed)
    return ImpostorTail.fit_all_pairs(scores)


def review_threshold(
    settings: MatchingSettings,
    gallery: Gallery | None,
    *,
    threshold: float | None,
    target_fpir: float | None,
) -> ReviewThreshold:
    """The review threshold of a batch searched against ``gallery`` (None: there is none yet).

    Raises ``ConfigError`` when both a threshold and a target are given, or a target outside
    (0, 1); falls back to ``settings.review_threshold`` when the target cannot be calibrated.
    """
    if threshold is not None and target_fpir is not None:
        raise ConfigError("give a review threshold or a target FPIR, not both")
    if target_fpir is not None and not 0.0 < target_fpir < 1.0:
        raise ConfigError(f"a target FPIR lies strictly between 0 and 1, not {target_fpir:g}")
    tail = None if gallery is None else gallery_tail(gallery)
    if threshold is not None:
        return ReviewThreshold(threshold, "given", tail)
    if target_fpir is None:
        return ReviewThreshold(settings.review_threshold, CONFIGURED, tail)
    if gallery is not None and tail is not None:
        calibrated = review_threshold_for(target_fpir, gallery.size, tail)
        source = f"FPIR {target_fpir:g} at N = {gallery.size}"
        return ReviewThreshold(calibrated, source, tail, target_fpir=target_fpir)
    if gallery is None:
        why = "there is no gallery yet to calibrate it on"
    else:
        why = (
            f"the gallery's {gallery.size:,} live templates are too few to calibrate it on "
            f"({MIN_TAIL_TEMPLATES:,} needed)"
        )
    return ReviewThreshold(
        settings.review_threshold,
        CONFIGURED,
        tail,
        f"target FPIR {target_fpir:g} not applied: {why}, so the configured threshold was used",
    )
