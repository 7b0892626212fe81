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
from dedup.matching.thresholds import ImpostorTail, review_threshold_for, sample_impostor_scores
from dedup.settings import MatchingSettings

# How much of the gallery the impostor tail is fitted on: enough pairs to trust p(t) down to
# about 1e-3 / pairs (see dedup.matching.thresholds), from enough distinct templates.
TAIL_ROWS = 200_000
TAIL_PAIRS = 10_000_000
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
    """The impostor score tail of the gallery, from random pairs of its live templates.

    Gallery entries are distinct people (that is what deduplication keeps them), so random
    pairs of them are non-mated. None when the gallery is too small to fit a tail.
    """
    live = gallery.ids_table()["gallery_id"].to_numpy()
    if len(live) < MIN_TAIL_TEMPLATES:
        return None
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(live, size=min(TAIL_ROWS, len(live)), replace=False))
    vectors = np.asarray(gallery.vectors[rows], dtype=np.float32)
    pairs = min(TAIL_PAIRS, 50 * len(rows))
    return ImpostorTail.fit(sample_impostor_scores(vectors, pairs=pairs, seed=seed))


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
