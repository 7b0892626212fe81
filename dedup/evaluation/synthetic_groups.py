"""Labelled synthetic evaluation sets with known demographic differentials.

Beside ``synthetic``'s template model, each group ``g`` has a unit direction ``d_g`` of its
own and a weight ``w_g``: a template of a person of group ``g`` is

    normalise(a * mean + sqrt(w_g) * d_g + sqrt(b^2 - w_g) * identity + c_k * noise)

so two different people of one group share ``w_g`` more of their energy than two people of
different groups and score higher, while two captures of one person score as before (the
group's share is taken from the identity's): a group with a larger ``w_g`` has a higher FMR at every
threshold. The planted differential is known by construction; ``planted_fmr`` measures it on
as many fresh, independent impostor pairs as asked (a huge sample, not the evaluation set).

``write_labelled_set`` writes ``templates.parquet`` (``enrollment_id``, ``vector``) and
``labels.parquet`` (``enrollment_id``, ``subject_id``, ``group`` and an ``age_band`` that
changes nothing), the two files ``dedup evaluate`` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dedup.atomic_files import write_atomically
from dedup.contracts.vectors import vector_table
from dedup.evaluation.synthetic import ScoreModel, Vectors, unit

# Group C's people share 0.02 of their energy with each other that A's or B's do not: about
# 12x group A's FMR where A's is 0.002 (200,000 planted pairs each), more further out.
DEFAULT_GROUPS: dict[str, float] = {"A": 0.0, "B": 0.0, "C": 0.02}
AGE_BANDS = ("18-30", "31-50", "51+")


@dataclass(frozen=True)
class GroupedSynth:
    dim: int
    seed: int
    groups: Mapping[str, float]
    model: ScoreModel = field(default_factory=ScoreModel)

    def _direction(self, stream: int, count: int) -> np.ndarray:
        return unit(np.random.default_rng([self.seed, 11, stream]).normal(size=(count, self.dim)))

    def templates(
        self, group_of_subject: np.ndarray, captures: int, stream: int
    ) -> tuple[Vectors, np.ndarray]:
        """``captures`` templates of each subject (subject-major), and their subject numbers.
        ``stream`` keeps different draws of people independent."""
        m = self.model
        names = list(self.groups)
        mean = self._direction(0, 1)[0]
        group_dirs = self._direction(1, len(names))
        weights = np.array([self.groups[n] for n in names])
        identities = self._direction(100 + stream, len(group_of_subject))
        rng = np.random.default_rng([self.seed, 12, stream])
        subject = np.repeat(np.arange(len(group_of_subject)), captures)
        g = group_of_subject[subject]
        noise = unit(rng.normal(size=(len(subject), self.dim)))
        noise *= m.capture_noise(rng, len(subject))[:, None]
        raw = (
            np.sqrt(m.mean_share) * mean
            + np.sqrt(weights[g])[:, None] * group_dirs[g]
            + np.sqrt(m.identity_share - weights[g])[:, None] * identities[subject]
            + noise
        )
        return unit(raw).astype(np.float32), subject


def planted_fmr(synth: GroupedSynth, group: str, threshold: float, pairs: int) -> float:
    """FMR of group ``group`` at ``threshold`` on ``pairs`` independent impostor pairs (two
    fresh people of the group, one capture each, no template reused)."""
    g = list(synth.groups).index(group)
    hits, done, stream = 0, 0, 1_000
    while done < pairs:
        count = min(pairs - done, 100_000)
        vectors, _ = synth.templates(np.full(2 * count, g), 1, stream)
        scores = np.einsum("ij,ij->i", vectors[0::2], vectors[1::2])
        hits += int((scores >= threshold).sum())
        done, stream = done + count, stream + 1
    return hits / pairs


def write_labelled_set(
    out: Path,
    subjects: int,
    captures: int = 2,
    dim: int = 128,
    seed: int = 0,
    groups: Mapping[str, float] | None = None,
) -> GroupedSynth:
    """``subjects`` people in equal shares of the groups, ``captures`` templates each."""
    synth = GroupedSynth(dim, seed, dict(groups or DEFAULT_GROUPS))
    names = list(synth.groups)
    group_of_subject = np.arange(subjects) % len(names)
    vectors, subject = synth.templates(group_of_subject, captures, 0)
    rng = np.random.default_rng([seed, 13])
    age = rng.integers(0, len(AGE_BANDS), subjects)[subject]
    ids = [f"E{i:08d}" for i in range(len(subject))]
    templates = vector_table(ids, vectors)
    labels = pa.table(
        {
            "enrollment_id": ids,
            "subject_id": [f"S{s:07d}" for s in subject],
            "group": [names[group_of_subject[s]] for s in subject],
            "age_band": [AGE_BANDS[a] for a in age],
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "templates.parquet", lambda p: pq.write_table(templates, p))
    write_atomically(out / "labels.parquet", lambda p: pq.write_table(labels, p))
    return synth
