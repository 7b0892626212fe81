"""The batch report as one self-contained HTML page: its figures in tables and its plots as
PNG data URIs (no external file, script or font), so it opens offline, from the lake or
through the review service."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

from jinja2 import Environment, select_autoescape
from markupsafe import Markup, escape

from dedup.reporting.batch_report import BatchReport

# The page itself, beside this module (autoescaped: every value is text).
PAGE = Path(__file__).with_name("report.html")


def _num(value: float | int | None) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"


def render_page(report: BatchReport, plots: Mapping[str, bytes | None]) -> str:
    """The page of ``report`` with ``plots`` (name -> PNG bytes, None: no data) embedded."""

    def plot(name: str, title: str) -> Markup:
        png = plots.get(name)
        if png is None:
            return Markup("<p>{}: no data yet.</p>").format(title)
        data = base64.b64encode(png).decode("ascii")
        return Markup('<figure><img alt="{}" src="data:image/png;base64,{}"></figure>').format(
            escape(title), data
        )

    environment = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return environment.from_string(PAGE.read_text(encoding="utf-8")).render(
        r=report, num=_num, plot=plot, zip=zip
    )
