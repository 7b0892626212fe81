"""Which search engine a batch gets: the cost model.

It compares the two engines' predicted wall time from the batch size B, the gallery size N,
the dimension d and rates measured on the hardware (``SearchSettings``):

- exact sweep: 2 * B * N * d floating-point operations at the measured matrix-product rate
  (CPU or GPU);
- IVF: the time a query took at this nprobe when the gallery measured its recall (recorded
  in its manifest), or where there is none, each probe ranks the nlist coarse centroids
  (2 * nlist * d operations at the matrix-product rate), scans about nprobe / nlist of the N
  codes at the measured time per code, and pays a measured fixed cost (fan-out, merge,
  gathering and re-scoring the shortlist).

The IVF index is only eligible when its recall in the genuine band, as measured on the
gallery's own templates and recorded in its manifest (``dedup.gallery.recall``), reaches the
target at the ``nprobe`` it would run at: ``search.nprobe`` if set, else the gallery's
operating point (the smallest measured nprobe that reaches it). Otherwise the exact sweep is
chosen whatever it costs. The choice and its reason are reported with every search;
``dedup.matching.recall_audit`` then checks what the approximate engine missed.
"""

from __future__ import annotations

from dataclasses import dataclass

from dedup.gallery.recall_bands import MeasuredRecall, RecallPoint
from dedup.settings import SearchSettings


@dataclass(frozen=True)
class EngineChoice:
    engine: str  # "exact" or "ivfpq"
    reason: str
    exact_seconds: float
    ivf_seconds: float
    # The nprobe IVF runs (or would run) at, and its measured recall in the genuine band there
    # (None where the gallery has no measurement covering it).
    nprobe: int = 0
    measured_recall: float | None = None


def predict_seconds(
    batch: int,
    gallery: int,
    dim: int,
    nlist: int,
    settings: SearchSettings,
    gpu: bool,
    nprobe: int | None = None,
) -> tuple[float, float]:
    """(exact sweep, IVF) predicted seconds for B probes against N templates."""
    gflops = settings.exact_gflops_gpu if gpu else settings.exact_gflops_cpu
    exact = 2.0 * batch * gallery * dim / (gflops * 1e9)
    lists = nprobe or settings.nprobe or nlist
    scanned = gallery * min(1.0, lists / max(nlist, 1))
    ranking = 2.0 * nlist * dim / (gflops * 1e9)
    per_probe = ranking + scanned * settings.ivf_ns_per_code * 1e-9
    ivf = batch * (per_probe + settings.ivf_us_per_probe * 1e-6)
    return exact, ivf


def operating_point(
    recall: MeasuredRecall | None, settings: SearchSettings, band_floor: float
) -> tuple[int | None, RecallPoint | None]:
    """(nprobe, its measured point): ``search.nprobe`` if set, else the smallest nprobe the
    gallery measured to reach the target in the genuine band; (None, None) when neither."""
    if settings.nprobe is not None:
        return settings.nprobe, None if recall is None else recall.at(settings.nprobe)
    point = None if recall is None else recall.operating_point(band_floor, settings.target_recall)
    return (None, None) if point is None else (point.nprobe, point)


def choose_engine(
    batch: int,
    gallery: int,
    dim: int,
    nlist: int,
    settings: SearchSettings,
    gpu: bool = False,
    *,
    recall: MeasuredRecall | None = None,
    band_floor: float = 1.0,
) -> EngineChoice:
    nprobe, point = operating_point(recall, settings, band_floor)
    measured = None if point is None else point.recall_at_or_above(band_floor)
    running = nprobe or nlist
    exact, ivf = predict_seconds(batch, gallery, dim, nlist, settings, gpu, running)
    if point is not None and point.us_per_query > 0 and not gpu:
        # Measured on this gallery's own index at this nprobe (in one process, shard after
        # shard): it knows the codec's real speed, which the per-code rate does not.
        ivf = batch * point.us_per_query * 1e-6
    where = "GPU" if gpu else "CPU"

    def chosen(engine: str, reason: str) -> EngineChoice:
        return EngineChoice(engine, reason, exact, ivf, running, measured)

    if settings.engine != "auto":
        return chosen(settings.engine, "set by search.engine")
    target = settings.target_recall
    if measured is None or measured < target:
        if recall is None:
            why = "the gallery has no recall measurement"
        elif nprobe is None:
            why = f"no nprobe the gallery measured reaches recall {target:.4f}"
        elif measured is None:
            why = f"the gallery measured no pair at and above {band_floor:.4f} at nprobe {nprobe}"
        else:
            why = f"at nprobe {nprobe} the gallery measured recall {measured:.4f} < {target:.4f}"
        return chosen("exact", f"{why} in the genuine band (from {band_floor:.4f})")
    if exact <= ivf:
        return chosen(
            "exact",
            f"the exact sweep is predicted faster on {where} ({exact:.3g} s vs {ivf:.3g} s) "
            "and has no recall loss",
        )
    return chosen(
        "ivfpq",
        f"IVF is predicted {exact / ivf:.1f}x faster on {where} ({ivf:.3g} s vs {exact:.3g} s) "
        f"and the gallery measured recall {measured:.4f} >= {target:.4f} at nprobe {nprobe} "
        f"in the genuine band (from {band_floor:.4f})",
    )
