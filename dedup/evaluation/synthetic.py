"""Synthetic templates whose scores behave like the default model's on real faces.

A template is ``normalise(a * mean + b * identity + c_k * noise)``: a direction every face
shares (real templates are far from isotropic), a unit direction per person, and a unit
capture noise whose weight ``c_k`` varies per capture (some photos are worse than others).
In 128 dimensions random unit directions are nearly orthogonal, so two different people score
about ``a^2`` (spread by their identities' chance alignment) and two captures of one person
about ``(a^2 + b^2) / sqrt((a^2 + b^2 + c_1^2)(a^2 + b^2 + c_2^2))``.

The defaults are fitted to dlib's model on the real test portraits and their re-captures
(``dedup demo``, unit-normalised templates): same person 0.939 to 0.99 (median 0.971), different
people 0.816 median, 0.843 at most. ``tests/unit/test_synthetic.py`` holds the generator to
those.

Output (``write_synthetic_set``): ``gallery.parquet`` and ``probes.parquet`` with
``enrollment_id`` and ``vector`` (fixed_size_list<float32>[dim]), and ``truth.parquet``
naming, for every planted duplicate, the probe and the enrollment it duplicates (``source``
``gallery``, or ``batch`` for two probes of one new person).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from dedup.atomic_files import write_atomically
from dedup.contracts.schemas import CandidateSource
from dedup.contracts.vectors import vector_table

Vectors = NDArray[np.float32]
CHUNK = 262_144


@dataclass(frozen=True)
class ScoreModel:
    """Weights of the template model; their squares are shares of a template's energy.

    Two optional departures from the calibrated model, for testing a gallery index on data it
    was not tuned on:

    - ``noise_tail_df``: the log of a capture's noise share follows a Student t with this many
      degrees of freedom instead of a normal, so a few captures are far worse than the rest;
    - ``cluster_size`` and ``cluster_share``: people come in groups of ``cluster_size`` whose
      identity directions share ``cluster_share`` of their energy with the group's centre
      (look-alikes, relatives, twins): two members score far above unrelated people.
    """

    mean_share: float = 0.816  # a^2: what two different people share
    identity_share: float = 0.154  # b^2: what two captures of one person add
    noise_share_median: float = 0.024  # c^2 of a typical capture
    noise_share_spread: float = 0.6  # sigma of log(c^2) across captures
    noise_tail_df: float | None = None
    cluster_size: int = 1
    cluster_share: float = 0.0

    def capture_noise(self, rng: np.random.Generator, count: int) -> NDArray[np.float64]:
        spread = (
            rng.normal(0, 1, count)
            if self.noise_tail_df is None
            else rng.standard_t(self.noise_tail_df, count)
        )
        shares = self.noise_share_median * np.exp(self.noise_share_spread * spread)
        return np.sqrt(np.clip(shares, 0.0, 0.5))


# The distributions ``dedup gallery synth --kind`` writes, with their default dimension.
KINDS: dict[str, tuple[ScoreModel, int]] = {
    # Fitted to dlib's model on the real portraits (the module docstring).
    "calibrated": (ScoreModel(), 128),
    # Heavier-tailed capture noise and groups of four look-alikes scoring about 0.92 apart.
    "clustered": (
        ScoreModel(noise_share_spread=0.9, noise_tail_df=3.0, cluster_size=4, cluster_share=0.75),
        128,
    ),
    # In the manner of ArcFace-style 512-d models: a weak shared population direction
    # (different people about 0.1), same person about 0.65.
    "arcface512": (
        ScoreModel(
            mean_share=0.1, identity_share=0.55, noise_share_median=0.33, noise_share_spread=0.4
        ),
        512,
    ),
}


def unit(vectors: NDArray[np.float64]) -> NDArray[np.float64]:
    scaled: NDArray[np.float64] = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    return scaled


class TemplateSynth:
    """Deterministic identities and captures for one (seed, dim, model)."""

    def __init__(self, dim: int, seed: int = 0, model: ScoreModel | None = None) -> None:
        self.dim, self.seed, self.model = dim, seed, model or ScoreModel()
        self.mean = unit(np.random.default_rng([seed, 0]).normal(size=dim))

    def identities(self, start: int, count: int) -> NDArray[np.float64]:
        """Unit identity directions of persons start..start+count-1, the same on every call."""
        return self.identities_at(np.arange(start, start + count))

    def identities_at(self, persons: NDArray[np.int64]) -> NDArray[np.float64]:
        """Identity directions of any persons, generating each block of them once; people of
        one look-alike group (``ScoreModel.cluster_size``) lean towards its centre."""
        own = self._directions(1, persons)
        share = self.model.cluster_share
        if self.model.cluster_size <= 1 or share <= 0:
            return own
        centres = self._directions(4, persons // self.model.cluster_size)
        return unit(np.sqrt(share) * centres + np.sqrt(1.0 - share) * own)

    def _directions(self, stream: int, numbers: NDArray[np.int64]) -> NDArray[np.float64]:
        out = np.empty((len(numbers), self.dim))
        blocks = numbers // CHUNK
        for number in np.unique(blocks):
            rows = np.nonzero(blocks == number)[0]
            block = unit(
                np.random.default_rng([self.seed, stream, int(number)]).normal(
                    size=(CHUNK, self.dim)
                )
            )
            out[rows] = block[numbers[rows] % CHUNK]
        return out

    def captures(self, identities: NDArray[np.float64], stream: int) -> Vectors:
        """One capture of each identity; ``stream`` keeps different capture sets independent."""
        rng = np.random.default_rng([self.seed, 2, stream])
        m = self.model
        noise = (
            unit(rng.normal(size=identities.shape)) * m.capture_noise(rng, len(identities))[:, None]
        )
        raw = np.sqrt(m.mean_share) * self.mean + np.sqrt(m.identity_share) * identities + noise
        return unit(raw).astype(np.float32)


@dataclass(frozen=True)
class SyntheticSet:
    folder: Path
    gallery_size: int
    probes: int
    gallery_duplicates: int
    batch_duplicates: int


def _gallery_chunks(synth: TemplateSynth, n: int) -> Iterator[pa.Table]:
    for start in range(0, n, CHUNK):
        count = min(CHUNK, n - start)
        vectors = synth.captures(synth.identities(start, count), stream=start // CHUNK)
        yield vector_table([f"G{i:010d}" for i in range(start, start + count)], vectors)


def write_synthetic_set(
    out: Path,
    n: int,
    dim: int = 128,
    duplicates: int = 1000,
    probes: int = 10_000,
    batch_pairs: int | None = None,
    seed: int = 0,
    model: ScoreModel | None = None,
) -> SyntheticSet:
    """A gallery of ``n`` people, ``probes`` new enrollments of which ``duplicates`` are new
    captures of gallery people and ``batch_pairs`` pairs are two captures of one new person."""
    batch_pairs = duplicates // 10 if batch_pairs is None else batch_pairs
    if duplicates > n or duplicates + 2 * batch_pairs > probes:
        raise ValueError("more planted duplicates than gallery people or probes")
    synth = TemplateSynth(dim, seed, model)
    rng = np.random.default_rng([seed, 3])
    out.mkdir(parents=True, exist_ok=True)

    def write_gallery(path: Path) -> None:
        with pq.ParquetWriter(path, vector_table([], np.zeros((0, dim), np.float32)).schema) as w:
            for table in _gallery_chunks(synth, n):
                w.write_table(table)

    write_atomically(out / "gallery.parquet", write_gallery)

    duplicated = np.sort(rng.choice(n, size=duplicates, replace=False))
    fresh = probes - duplicates - batch_pairs  # new people with one probe, or the first of a pair
    new_people = synth.identities(n, fresh)
    identities = np.concatenate(
        [synth.identities_at(duplicated), new_people, new_people[:batch_pairs]]
    )
    order = rng.permutation(probes)
    vectors = synth.captures(identities, stream=1_000_000)[order]
    probe_ids = [f"P{i:08d}" for i in range(probes)]
    position = np.empty(probes, dtype=np.int64)
    position[order] = np.arange(probes)
    truth_probe: list[str] = []
    truth_match: list[str] = []
    truth_source: list[CandidateSource] = []
    for k, gallery_index in enumerate(duplicated):
        truth_probe.append(probe_ids[position[k]])
        truth_match.append(f"G{gallery_index:010d}")
        truth_source.append(CandidateSource.GALLERY)
    for k in range(batch_pairs):
        first, second = duplicates + k, duplicates + fresh + k
        truth_probe.append(probe_ids[position[second]])
        truth_match.append(probe_ids[position[first]])
        truth_source.append(CandidateSource.BATCH)
    probes_table = vector_table(probe_ids, vectors)
    write_atomically(out / "probes.parquet", lambda p: pq.write_table(probes_table, p))
    truth = pa.table({"probe_id": truth_probe, "match_id": truth_match, "source": truth_source})
    write_atomically(out / "truth.parquet", lambda p: pq.write_table(truth, p))
    return SyntheticSet(out, n, probes, duplicates, batch_pairs)
