"""The evaluation report's plots as PNG bytes (matplotlib imported here only, Agg backend, a
Figure of its own per plot): the DET curve with its band, CMC, and growth with N."""

from __future__ import annotations

from typing import Any

from dedup.reporting.plots import _figure, _png


def _positive(values: list[Any]) -> list[float]:
    return [v if isinstance(v, int | float) and v > 0 else float("nan") for v in values]


def _log_axes(axes: Any, xs: list[float], ys: list[float]) -> None:
    """Log axes where there is something positive to show on them (a rate of 0 everywhere,
    as on a small set at a strict threshold, stays on a linear axis)."""
    if any(x == x and x > 0 for x in xs):
        axes.set_xscale("log")
    if any(y == y and y > 0 for y in ys):
        axes.set_yscale("log")


def det_plot(report: dict[str, Any]) -> bytes:
    """FNIR against FPIR, both on log axes, with the bootstrap band and the operating points."""
    figure, axes = _figure()
    det, band = report["det"], report["det_band"]
    axes.plot(_positive(det["fpir"]), _positive(det["fnir"]), label="FNIR (all searches)")
    if any(v > 0 for v in band["fnir_low"]):
        axes.fill_between(
            band["fpir"],
            _positive(band["fnir_low"]),
            _positive(band["fnir_high"]),
            alpha=0.25,
            label="95% subject bootstrap",
        )
    for point in report["fnir_at_fpir"]:
        if point["fnir"] > 0:
            axes.plot([point["fpir"]], [point["fnir"]], "o", color="black")
    _log_axes(axes, _positive(det["fpir"]), _positive(det["fnir"]))
    axes.set_xlabel("FPIR (non-mated searches with a candidate)")
    axes.set_ylabel(f"FNIR (mate not at rank <= {report['rank']})")
    axes.legend(loc="upper right")
    return _png(figure)


def cmc_plot(report: dict[str, Any]) -> bytes:
    figure, axes = _figure()
    cmc = report["cmc"]
    axes.plot(cmc["rank"], cmc["rate"], marker="o", label="identification rate (T = 0)")
    axes.fill_between(cmc["rank"], cmc["low"], cmc["high"], alpha=0.25, label="95% bootstrap")
    axes.set_xlabel("rank")
    axes.set_ylabel("share of mated searches")
    axes.legend(loc="lower right")
    return _png(figure)


def growth_plot(report: dict[str, Any]) -> bytes:
    figure, axes = _figure()
    rows = report["growth"]["rows"]
    n = [r["gallery_size"] for r in rows]
    ys: list[float] = []
    for key, label in (
        ("fixed_fpir", "FPIR, threshold held"),
        ("fixed_fnir", "FNIR, threshold held"),
        ("calibrated_fpir", "FPIR, re-calibrated"),
        ("calibrated_fnir", "FNIR, re-calibrated"),
    ):
        ys += _positive([r[key] for r in rows])
        axes.plot(n, _positive([r[key] for r in rows]), marker="o", label=label)
    _log_axes(axes, [float(v) for v in n], ys)
    axes.set_xlabel("gallery size N")
    axes.set_ylabel("rate")
    axes.legend(loc="best", fontsize="small")
    return _png(figure)
