"""Where true duplicates score: the floor of the band the approximate search must cover.

The recall that matters is recall of true duplicates, and they score in a band of their own
(the genuine scores). Its floor is the genuine scores' lower quantile
(``search.genuine_quantile``):

- estimated from the scores of candidate pairs the adjudicators decided were duplicates, once
  there are ``search.genuine_min_duplicates`` of them (these were all candidates, so the
  estimate never falls below the review thresholds they were found at: a true duplicate
  scoring below every threshold was never seen);
- before that, the model's ``genuine_floor`` setting (measured on the model's own test faces);
- and where the model has none, the batch's review threshold: every candidate is then held to
  the target.

The planner (``cost_model``) and the recall audit (``recall_audit``) both apply the floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dedup.settings import Settings


@dataclass(frozen=True)
class GenuineBand:
    floor: float
    source: str

    def sentence(self) -> str:
        return f"genuine band from {self.floor:.4f} ({self.source})"


def genuine_band(
    settings: Settings,
    model_id: str,
    review_threshold: float,
    duplicate_scores: Sequence[float] = (),
) -> GenuineBand:
    """The genuine band's floor for a batch of ``model_id`` (see the module docstring)."""
    search = settings.search
    scores = np.asarray(duplicate_scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if len(scores) >= search.genuine_min_duplicates:
        floor = float(np.quantile(scores, search.genuine_quantile))
        return GenuineBand(
            floor,
            f"the {search.genuine_quantile:g} quantile of {len(scores)} adjudicated duplicates",
        )
    model = settings.models.get(model_id)
    if model is not None and model.genuine_floor is not None:
        return GenuineBand(model.genuine_floor, f"models.{model_id}.genuine_floor")
    return GenuineBand(review_threshold, "the review threshold: no genuine floor known yet")
