"""Which search engine a batch gets: the cost model.

It compares the two engines' predicted wall time from the batch size B, the gallery size N,
the dimension d and rates measured on the hardware (``SearchSettings``):

- exact sweep: 2 * B * N * d floating-point operations at the measured matrix-product rate
  (CPU or GPU);
- IVF-PQ: each probe ranks the nlist coarse centroids (2 * nlist * d operations at the
  matrix-product rate), scans about nprobe / nlist of the N codes at the measured time per
  code, and pays a measured fixed cost (fan-out, merge, gathering and re-scoring the
  shortlist).

IVF-PQ is only eligible when its recall, as last measured at the configured ``nprobe``, reaches
the batch's target; otherwise the exact sweep is chosen whatever it costs. The choice and its
reason are reported with every search; ``dedup.matching.recall_audit`` then checks what the
approximate engine missed.
"""

from __future__ import annotations

from dataclasses import dataclass

from dedup.settings import SearchSettings


@dataclass(frozen=True)
class EngineChoice:
    engine: str  # "exact" or "ivfpq"
    reason: str
    exact_seconds: float
    ivf_seconds: float


def predict_seconds(
    batch: int, gallery: int, dim: int, nlist: int, settings: SearchSettings, gpu: bool
) -> tuple[float, float]:
    """(exact sweep, IVF-PQ) predicted seconds for B probes against N templates."""
    gflops = settings.exact_gflops_gpu if gpu else settings.exact_gflops_cpu
    exact = 2.0 * batch * gallery * dim / (gflops * 1e9)
    scanned = gallery * min(1.0, settings.nprobe / max(nlist, 1))
    ranking = 2.0 * nlist * dim / (gflops * 1e9)
    per_probe = ranking + scanned * settings.ivf_ns_per_code * 1e-9
    ivf = batch * (per_probe + settings.ivf_us_per_probe * 1e-6)
    return exact, ivf


def choose_engine(
    batch: int, gallery: int, dim: int, nlist: int, settings: SearchSettings, gpu: bool = False
) -> EngineChoice:
    exact, ivf = predict_seconds(batch, gallery, dim, nlist, settings, gpu)
    where = "GPU" if gpu else "CPU"
    if settings.engine != "auto":
        return EngineChoice(settings.engine, "set by search.engine", exact, ivf)
    if settings.ivf_measured_recall < settings.target_recall:
        return EngineChoice(
            "exact",
            f"IVF-PQ at nprobe {settings.nprobe} was measured at recall "
            f"{settings.ivf_measured_recall:.4f}, below the target {settings.target_recall:.4f}",
            exact,
            ivf,
        )
    if exact <= ivf:
        return EngineChoice(
            "exact",
            f"the exact sweep is predicted faster on {where} ({exact:.3g} s vs {ivf:.3g} s) "
            "and has no recall loss",
            exact,
            ivf,
        )
    return EngineChoice(
        "ivfpq",
        f"IVF-PQ is predicted {exact / ivf:.1f}x faster on {where} ({ivf:.3g} s vs "
        f"{exact:.3g} s) and reached recall {settings.ivf_measured_recall:.4f} >= target "
        f"{settings.target_recall:.4f}",
        exact,
        ivf,
    )
