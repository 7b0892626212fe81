"""The evaluation report as one self-contained HTML page: figures in tables, plots as PNG data
URIs. Every text that came from the input (group names, column names, flags) is escaped, so a
hostile label is shown as text and never becomes markup."""

from __future__ import annotations

import base64
from typing import Any

from markupsafe import Markup, escape

from dedup.evaluation import plots


def _num(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def _interval(pair: list[float]) -> str:
    return f"[{_num(pair[0])}, {_num(pair[1])}]"


def _image(title: str, png: bytes) -> Markup:
    data = base64.b64encode(png).decode("ascii")
    return Markup(
        '<figure><img alt="{}" src="data:image/png;base64,{}"><figcaption>{}</figcaption></figure>'
    ).format(title, data, title)


def _table(head: list[str], rows: list[list[Any]]) -> Markup:
    cells = Markup("").join(Markup("<th>{}</th>").format(h) for h in head)
    body = Markup("").join(
        Markup("<tr>{}</tr>").format(Markup("").join(Markup("<td>{}</td>").format(c) for c in r))
        for r in rows
    )
    return Markup("<table><tr>{}</tr>{}</table>").format(cells, body)


def render_evaluation_page(report: dict[str, Any]) -> str:
    counts = report["counts"]
    parts: list[Markup] = [
        Markup(
            "<h1>Open-set 1:N evaluation</h1><p>{} enrollments of {} subjects; gallery {}; "
            "{} mated and {} non-mated searches; candidate list {}; seed {}.</p>"
        ).format(
            _num(counts["enrollments"]),
            _num(counts["subjects"]),
            _num(counts["gallery"]),
            _num(counts["mated_searches"]),
            _num(counts["nonmated_searches"]),
            report["rank"],
            report["seed"],
        ),
        Markup("<h2>FNIR at FPIR</h2>"),
        _table(
            [
                "FPIR target",
                "threshold",
                "FPIR observed",
                "FNIR",
                "FNIR 95% (Clopper-Pearson)",
                "few errors",
            ],
            [
                [
                    _num(p["fpir"]),
                    _num(p["threshold"]),
                    _num(p["fpir_observed"]),
                    _num(p["fnir"]),
                    _interval(p["fnir_ci"]),
                    "yes" if p["few_errors"] else "",
                ]
                for p in report["fnir_at_fpir"]
            ],
        ),
        _image("DET / IET: FNIR against FPIR", plots.det_plot(report)),
        Markup("<h2>Investigation mode</h2><p>rank 1: {}</p>").format(_num(report["rank1"])),
        _image("CMC", plots.cmc_plot(report)),
        Markup("<h2>Gallery growth</h2>"),
        _table(
            [
                "N",
                "mated searches",
                "held threshold",
                "FPIR",
                "FNIR",
                "re-calibrated threshold",
                "FPIR",
                "FNIR",
            ],
            [
                [
                    _num(r["gallery_size"]),
                    _num(r["mated_searches"]),
                    _num(r["fixed_threshold"]),
                    _num(r["fixed_fpir"]),
                    _num(r["fixed_fnir"]),
                    _num(r["calibrated_threshold"]),
                    _num(r["calibrated_fpir"]),
                    _num(r["calibrated_fnir"]),
                ]
                for r in report["growth"]["rows"]
            ],
        ),
        _image("FNIR and FPIR as the gallery grows", plots.growth_plot(report)),
    ]
    threshold = report["group_threshold"]
    for column, rows in report["groups"].items():
        d = report["differentials"][column]
        parts.append(
            Markup(
                "<h2>Groups by {}</h2><p>At threshold {} (FPIR {} on all searches). "
                "FMR max / geometric mean {}; FNMR max / geometric mean {}.</p>"
            ).format(
                column,
                _num(threshold["threshold"]),
                _num(threshold["fpir"]),
                _num(d["fmr_max_over_geomean"]),
                _num(d["fnmr_max_over_geomean"]),
            )
        )
        parts.append(
            _table(
                ["group", "FMR", "95%", "impostor pairs", "FNMR", "95%", "genuine pairs", "flag"],
                [
                    [
                        g["group"],
                        _num(g["fmr"]),
                        _interval(g["fmr_ci"]),
                        _num(g["impostor_pairs"]),
                        _num(g["fnmr"]),
                        _interval(g["fnmr_ci"]),
                        _num(g["genuine_pairs"]),
                        f"FMR > {d['factor']:g}x best" if g["group"] in d["flagged"] else "",
                    ]
                    for g in rows
                ],
            )
        )
        names = d["cross_fmr"]["groups"]
        parts.append(Markup("<h3>Cross-group impostor FMR</h3>"))
        parts.append(
            _table(
                ["", *names],
                [
                    [a, *(_num(v) for v in row)]
                    for a, row in zip(names, d["cross_fmr"]["fmr"], strict=True)
                ],
            )
        )
    flags = Markup("").join(Markup("<li>{}</li>").format(f) for f in report["flags"])
    parts.append(Markup("<h2>Flags</h2><ul>{}</ul>").format(flags))
    body = Markup("").join(parts)
    return str(
        Markup(
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{}</title>'
            "<style>body{{font-family:sans-serif;max-width:60em;margin:auto}}"
            "td,th{{padding:0 .6em;text-align:right}}</style></head><body>{}</body></html>"
        ).format(escape("dedup evaluate"), body)
    )
