"""The batch report's plots as PNG bytes (matplotlib, Agg: no display needed), small enough
to embed in the page as data URIs so that it works offline. Each is None without data."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from dedup.reporting.nights import Night

WIDTH, HEIGHT, DPI = 6.4, 3.2, 100


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    # A Figure of its own, never pyplot's global state: safe inside a long-lived process.
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    return figure, figure.add_subplot()


def _png(figure: Any) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _bins(scores: Sequence[float], threshold: float | None) -> list[float]:
    low = min([*scores, *([threshold] if threshold is not None else [])])
    low = max(-1.0, low - 0.005)
    step = max((1.0 - low) / 40, 0.0025)
    return [low + i * step for i in range(int((1.0 - low) / step) + 2)]


def score_histogram(
    gallery: Sequence[float], batch: Sequence[float], threshold: float | None
) -> bytes | None:
    """Candidate scores by source, with the review threshold as a line."""
    if not gallery and not batch:
        return None
    figure, axes = _figure()
    bins = _bins([*gallery, *batch], threshold)
    axes.hist([list(gallery), list(batch)], bins=bins, stacked=True, label=["gallery", "batch"])
    if threshold is not None:
        axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4f}")
    axes.set_xlabel("score (cosine)")
    axes.set_ylabel("candidate rows")
    axes.legend(loc="upper left")
    return _png(figure)


def decided_histogram(
    duplicate: Sequence[float], not_duplicate: Sequence[float], threshold: float | None
) -> bytes | None:
    """Scores of the candidates of probes decided duplicate against decided not duplicate."""
    if not duplicate and not not_duplicate:
        return None
    figure, axes = _figure()
    bins = _bins([*duplicate, *not_duplicate], threshold)
    axes.hist(list(duplicate), bins=bins, alpha=0.6, label="decided duplicate")
    axes.hist(list(not_duplicate), bins=bins, alpha=0.6, label="decided not duplicate")
    if threshold is not None:
        axes.axvline(threshold, color="black", linestyle="--", label="threshold")
    axes.set_xlabel("score (cosine)")
    axes.set_ylabel("candidate rows")
    axes.legend(loc="upper left")
    return _png(figure)


def nights_plot(nights: Sequence[Night], cumulative: Sequence[Night] = ()) -> bytes | None:
    """Predicted and observed false candidates, night by night and (dashed) cumulative."""
    if not any(n.expected_false is not None or n.observed_false is not None for n in nights):
        return None
    figure, axes = _figure()
    xs = list(range(len(nights)))
    for listed, style, kind in ((nights, "-", "night"), (cumulative, "--", "cumulative")):
        if not listed:
            continue
        predicted = [float("nan") if n.expected_false is None else n.expected_false for n in listed]
        observed = [float("nan") if n.observed_false is None else n.observed_false for n in listed]
        axes.plot(xs, predicted, style, marker="o", color="C0", label=f"predicted, {kind}")
        axes.plot(xs, observed, style, marker="s", color="C1", label=f"observed (decided), {kind}")
    axes.set_xticks(xs, [n.batch_id for n in nights], rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("false candidate pairs")
    axes.legend(loc="upper left")
    return _png(figure)
