"""Impostor tail fit against brute force: predicted and found false candidates, two fits.

On calibrated synthetic templates (``dedup.evaluation.synthetic``, 128-d), in one run:

- a gallery of N people (10 M by default) generated chunk by chunk and never held whole, and
  ``--probes`` non-mated probes (new people);
- brute force: every probe x gallery pair scored (BLAS, chunk by chunk), keeping the scores
  above a low bound (about p = 1e-5) and each probe's highest score;
- two fits on the same ``--rows`` random gallery rows (``--fits`` independent sets of them):
  OLD, the gallery's recipe before this benchmark (GPD above the 99.9th percentile of 1e7
  random pairs, ``ImpostorTail.fit``), and NEW, its recipe now (every pair of the rows,
  ``tail_of_templates``);
- side by side: predicted (B * N * p(t)) and found false candidates at the threshold each
  fit sets for the target FPIR at N, at the configured ``matching.review_threshold`` and at
  thresholds where brute force finds 1e6 .. 10 pairs, with the ratio predicted / found, the
  per-pair p(t), the spread of the found count over probe resamples, and the time of each
  fit.

With ``--workdir`` the brute-force counts and the fit rows are kept, and a later run with the
same N, probes, rows and seed re-fits only.

    .venv/bin/python benchmarks/tail_fit.py                  # N = 10 M
    .venv/bin/python benchmarks/tail_fit.py --n 1000000      # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from dedup.evaluation.synthetic import CHUNK, TemplateSynth
from dedup.matching.impostor_pairs import sample_impostor_scores
from dedup.matching.threshold_policy import tail_of_templates
from dedup.matching.thresholds import (
    ImpostorTail,
    expected_false_candidates,
    review_threshold_for,
)
from dedup.settings import MatchingSettings

Vectors = NDArray[np.float32]
COLUMNS = 8192  # gallery templates per probe block product: probes x 8192 float32 scores
OLD_PAIRS = 10_000_000
PROBE_STREAM = 1_000_000  # the capture stream write_synthetic_set gives its probes


class Observed(NamedTuple):
    """What brute force found: every probe x gallery score above ``low``, descending, the probe
    of each, and each probe's highest score."""

    low: float
    scores: NDArray[np.float32]
    probe: NDArray[np.int32]
    probe_max: NDArray[np.float32]
    seconds: float

    def above(self, t: float) -> int:
        return int(np.searchsorted(-self.scores, -t, side="left"))

    def interval(self, t: float, draws: int = 2000, level: float = 0.9) -> tuple[float, float]:
        """How much the count above ``t`` varies with the probe set: a bootstrap over probes.

        The far tail is made of a few sharp probes, so the count that 10,000 probes find
        spreads far more than Poisson; a prediction inside this interval is as close as this
        brute force can tell."""
        per_probe = np.bincount(self.probe[: self.above(t)], minlength=len(self.probe_max))
        rng = np.random.default_rng(0)
        weights = rng.multinomial(
            len(per_probe), np.full(len(per_probe), 1 / len(per_probe)), draws
        )
        counts = weights @ per_probe
        low, high = np.quantile(counts, [(1 - level) / 2, (1 + level) / 2])
        return float(low), float(high)


class Fit(NamedTuple):
    name: str
    tail: ImpostorTail
    seconds: float


def brute_force(
    synth: TemplateSynth, n: int, probes: Vectors, rows: list[NDArray[np.int64]], low_p: float
) -> tuple[Observed, list[Vectors]]:
    """Score every probe against the gallery, generated chunk by chunk as
    ``write_synthetic_set`` writes it, and pick out the fit rows on the way."""
    started = time.perf_counter()
    low = np.inf
    kept: list[NDArray[np.float32]] = []
    owners: list[NDArray[np.int32]] = []
    probe_max = np.full(len(probes), -np.inf, dtype=np.float32)
    picked: list[list[Vectors]] = [[] for _ in rows]
    for start in range(0, n, CHUNK):
        count = min(CHUNK, n - start)
        gallery = synth.captures(synth.identities(start, count), stream=start // CHUNK)
        for k, chosen in enumerate(rows):
            inside = chosen[(chosen >= start) & (chosen < start + count)] - start
            picked[k].append(gallery[inside])
        for j in range(0, count, COLUMNS):
            scores = probes @ gallery[j : j + COLUMNS].T
            best = scores.max(axis=1)
            np.maximum(probe_max, best, out=probe_max)
            if low == np.inf:  # the first block sets the bound: its 1 - low_p quantile
                cut = int(scores.size * (1.0 - low_p))
                low = float(np.partition(scores.ravel(), cut)[cut])
            hot_rows = np.flatnonzero(best > low)
            hot = scores[hot_rows]
            r, c = np.nonzero(hot > low)
            kept.append(hot[r, c])
            owners.append(hot_rows[r].astype(np.int32))
        if sys.stdout.isatty():
            print(f"\r  brute force: {start + count:,} of {n:,}", end="", flush=True)
    if sys.stdout.isatty():
        print("\r", end="")
    found = np.concatenate(kept)
    order = np.argsort(found, kind="stable")[::-1]
    seconds = time.perf_counter() - started
    observed = Observed(low, found[order], np.concatenate(owners)[order], probe_max, seconds)
    return observed, [np.concatenate(p) for p in picked]


def timed(name: str, fit: Callable[[Vectors, int], ImpostorTail], v: Vectors, seed: int) -> Fit:
    started = time.perf_counter()
    tail = fit(v, seed)
    return Fit(name, tail, time.perf_counter() - started)


def old_fit(vectors: Vectors, seed: int) -> ImpostorTail:
    """The recipe ``gallery_tail`` used before this benchmark: GPD above the 99.9th percentile
    of ``min(1e7, 50 * rows)`` random pairs."""
    pairs = min(OLD_PAIRS, 50 * len(vectors))
    return ImpostorTail.fit(sample_impostor_scores(vectors, pairs=pairs, seed=seed))


def load_or_measure(args: argparse.Namespace) -> tuple[Observed, list[Vectors]]:
    synth = TemplateSynth(128, seed=args.seed)
    probes = synth.captures(synth.identities(args.n, args.probes), stream=PROBE_STREAM)
    key = f"v2-n{args.n}-b{args.probes}-r{args.rows}x{args.fits}-s{args.seed}-p{args.low_p:g}"
    cache = args.workdir / f"brute-{key}.npz" if args.workdir else None
    if cache is not None and cache.exists():
        data = np.load(cache)
        observed = Observed(
            float(data["low"]),
            data["scores"],
            data["probe"],
            data["probe_max"],
            float(data["seconds"]),
        )
        rows = [data[f"rows{k}"] for k in range(args.fits)]
        print(f"brute force: reused {cache} (it took {observed.seconds:.0f} s)")
        return observed, rows
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(args.n, size=min(args.n, args.rows * args.fits), replace=False)
    rows = [np.sort(part) for part in np.array_split(chosen, args.fits)]
    observed, vectors = brute_force(synth, args.n, probes, rows, args.low_p)
    if cache is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {f"rows{k}": v for k, v in enumerate(vectors)}
        arrays |= {"scores": observed.scores, "probe": observed.probe}
        arrays |= {"probe_max": observed.probe_max}
        arrays |= {"low": observed.low, "seconds": observed.seconds}
        np.savez(cache, **arrays)
    return observed, vectors


def describe(fit: Fit) -> str:
    tail = fit.tail
    return (
        f"{fit.name}: {fit.seconds:.1f} s, {tail.sample_size:.3g} pairs scored, u = "
        f"{tail.threshold:.4f} at p = {tail.tail_fraction:.2g} "
        f"({tail.tail_fraction * tail.sample_size:,.0f} above), shape {tail.shape:+.3f}, "
        f"scale {tail.scale:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="gallery size")
    parser.add_argument("--probes", type=int, default=10_000, help="non-mated probes")
    parser.add_argument("--rows", type=int, default=200_000, help="gallery rows a fit uses")
    parser.add_argument("--fits", type=int, default=1, help="independent row samples to fit on")
    parser.add_argument("--target-fpir", type=float, default=0.01)
    parser.add_argument("--low-p", type=float, default=1e-5, help="brute force keeps above this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep brute-force counts and fit rows here")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; N = {args.n:,}, "
        f"{args.probes:,} non-mated probes, fits on {args.fits} x {args.rows:,} gallery rows"
    )
    observed, samples = load_or_measure(args)
    pairs = args.n * args.probes
    print(
        f"brute force: {pairs:.3g} probe x gallery pairs, {len(observed.scores):,} above "
        f"{observed.low:.4f} kept ({observed.seconds:.0f} s)\n"
    )
    fits: list[list[Fit]] = []
    for k, vectors in enumerate(samples):
        pair = [
            timed("old", old_fit, vectors, args.seed + k),
            timed("new", tail_of_templates, vectors, args.seed + k),
        ]
        fits.append(pair)
        for fit in pair:
            print(f"sample {k}, {describe(fit)}")
    print()
    report(observed, fits, args)


def report(observed: Observed, fits: list[list[Fit]], args: argparse.Namespace) -> None:
    pairs = args.n * args.probes
    thresholds: list[tuple[str, float]] = []
    for name in ("old", "new"):
        t = review_threshold_for(args.target_fpir, args.n, _named(fits[0], name).tail)
        thresholds.append((f"FPIR {args.target_fpir:g} ({name})", t))
    configured = MatchingSettings().review_threshold
    if configured > observed.low:
        thresholds.append(("configured", configured))
    for count in (10**6, 10**5, 10**4, 10**3, 100, 30, 10):
        if count < len(observed.scores):
            t = float(observed.scores[count - 1] + observed.scores[count]) / 2.0
            thresholds.append((f"found {count:,}", t))
    thresholds.sort(key=lambda x: x[1])

    def predicted(fit: Fit, t: float) -> float:
        return expected_false_candidates(t, args.probes, args.n, fit.tail, within_batch=False)

    print(
        "false candidates against the gallery: found by brute force (with the 90% range of a "
        "bootstrap over probes,\nwhich understates how other probe sets differ), and predicted, "
        "B * N * p(t), by each fit on sample 0"
    )
    print(
        f"{'threshold':>17}{'t':>8}{'found':>11}{'90% range':>19}{'p found':>9}"
        f"{'old':>10}{'ratio':>6}{'new':>10}{'ratio':>6}"
    )
    for label, t in thresholds:
        found = observed.above(t)
        low, high = observed.interval(t)
        line = f"{label:>17}{t:>8.4f}{found:>11,}{f'{low:,.0f}-{high:,.0f}':>19}"
        line += f"{found / pairs:>9.2g}"
        for fit in fits[0]:
            shown = predicted(fit, t)
            ratio = f"{shown / found:.2f}" if found else "-"
            line += f"{f'{shown:,.0f}' if shown >= 10 else f'{shown:.2g}':>10}{ratio:>6}"
        print(line)
    if len(fits) > 1:
        print(f"\nratio predicted / found on each of the {len(fits)} samples")
        print(f"{'threshold':>17}{'old':>{6 * len(fits) + 2}}{'new':>{6 * len(fits) + 2}}")
        for label, t in thresholds:
            found = max(observed.above(t), 1)
            line = f"{label:>17}"
            for name in ("old", "new"):
                ratios = [predicted(_named(pair, name), t) / found for pair in fits]
                line += "  " + "".join(f"{r:>6.2f}" for r in ratios)
            print(line)
    print()
    for label, t in thresholds:
        if label.startswith("FPIR"):
            share = float(np.mean(observed.probe_max > t))
            print(
                f"{label}: threshold {t:.4f}; share of probes with a false candidate: "
                f"{share:.4f} (target {args.target_fpir:g})"
            )


def _named(pair: list[Fit], name: str) -> Fit:
    return next(f for f in pair if f.name == name)


if __name__ == "__main__":
    main()
