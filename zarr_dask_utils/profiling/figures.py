"""Bokeh figures of a :class:`~zarr_dask_utils.profiling.report.ProfileReport`.

Task timeline by prefix, bytes and requests per array, the latency histogram and memory over
time per worker.  :func:`figures_html` embeds them with BokehJS inlined, so the HTML works
offline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from zarr_dask_utils.profiling.report import ProfileReport

__all__ = ["figures_html", "profile_layout"]

_WIDTH = 900


def _palette(n: int) -> list[str]:
    from bokeh.palettes import Category10_10

    return [Category10_10[i % 10] for i in range(max(n, 1))]


def _timeline(report: ProfileReport) -> Any:
    from bokeh.models import ColumnDataSource, FactorRange
    from bokeh.plotting import figure

    runs = report.tasks
    t0 = min((r.start for r in runs), default=0.0)
    workers = sorted({r.worker for r in runs}) or ["(no tasks)"]
    fig = figure(
        title="Task timeline by prefix (s since the first task)",
        y_range=FactorRange(factors=workers),
        width=_WIDTH,
        height=max(180, 60 * len(workers) + 80),
        tools="xpan,xwheel_zoom,reset,save,hover",
        tooltips=[("prefix", "@prefix"), ("action", "@action"), ("ms", "@ms")],
    )
    prefixes = sorted({r.prefix for r in runs})
    for prefix, colour in zip(prefixes, _palette(len(prefixes)), strict=False):
        mine = [r for r in runs if r.prefix == prefix]
        src = ColumnDataSource(
            {
                "worker": [r.worker for r in mine],
                "left": [r.start - t0 for r in mine],
                "right": [r.stop - t0 for r in mine],
                "prefix": [prefix] * len(mine),
                "action": [r.action for r in mine],
                "ms": [round((r.stop - r.start) * 1e3, 3) for r in mine],
            }
        )
        alpha = [0.9 if r.action == "compute" else 0.35 for r in mine]
        src.data["alpha"] = alpha
        fig.hbar(
            y="worker",
            left="left",
            right="right",
            height=0.7,
            color=colour,
            fill_alpha="alpha",
            source=src,
            legend_label=prefix,
        )
    fig.xaxis.axis_label = "seconds"
    if prefixes:
        fig.legend.location = "top_right"
        fig.legend.click_policy = "hide"
    return fig


def _per_array(report: ProfileReport) -> tuple[Any, Any]:
    from bokeh.models import FactorRange
    from bokeh.plotting import figure

    names = [s.name for s in report.arrays] or ["(none)"]
    mb = [s.bytes_read / 1e6 for s in report.arrays] or [0.0]
    wmb = [s.bytes_written / 1e6 for s in report.arrays] or [0.0]
    req = [s.requests for s in report.arrays] or [0]
    width = _WIDTH // 2
    bytes_fig = figure(
        title="MB read / written per array",
        x_range=FactorRange(factors=names),
        width=width,
        height=300,
        tools="save,hover",
        tooltips=[("array", "@x"), ("MB", "@top")],
    )
    bytes_fig.vbar(x=names, top=mb, width=0.8, color="#1f77b4", legend_label="read")
    bytes_fig.vbar(x=names, top=wmb, width=0.4, color="#ff7f0e", legend_label="written")
    bytes_fig.xaxis.major_label_orientation = 0.8
    req_fig = figure(
        title="Store requests per array",
        x_range=FactorRange(factors=names),
        width=width,
        height=300,
        tools="save,hover",
        tooltips=[("array", "@x"), ("requests", "@top")],
    )
    req_fig.vbar(x=names, top=req, width=0.8, color="#2ca02c")
    req_fig.xaxis.major_label_orientation = 0.8
    return bytes_fig, req_fig


def _latency(report: ProfileReport) -> Any:
    from bokeh.plotting import figure

    ms = np.asarray(report.latencies_ms, dtype=float)
    fig = figure(
        title=f"Store request latency ({ms.size} requests)",
        width=_WIDTH // 2,
        height=300,
        tools="save,hover",
        tooltips=[("ms", "@left{0.000} - @right{0.000}"), ("requests", "@top")],
    )
    if ms.size:
        hi = float(np.percentile(ms, 99.5)) or float(ms.max()) or 1.0
        counts, edges = np.histogram(np.clip(ms, 0, hi), bins=40, range=(0, hi))
        fig.quad(top=counts, bottom=0, left=edges[:-1], right=edges[1:], color="#9467bd", alpha=0.8)
    fig.xaxis.axis_label = "milliseconds"
    fig.yaxis.axis_label = "requests"
    return fig


def _memory(report: ProfileReport) -> Any:
    from bokeh.plotting import figure

    fig = figure(
        title="Memory per worker (MB, process RSS)",
        width=_WIDTH // 2,
        height=300,
        tools="save,hover,xwheel_zoom,reset",
        tooltips=[("s", "@x{0.00}"), ("MB", "@y{0.0}")],
    )
    for m, colour in zip(report.memory, _palette(len(report.memory)), strict=False):
        if m.times:
            ys = [b / 1e6 for b in m.nbytes]
            fig.line(list(m.times), ys, color=colour, legend_label=m.worker, line_width=2)
            fig.scatter(list(m.times), ys, color=colour, size=4)
    if report.memory and any(m.times for m in report.memory):
        fig.legend.location = "bottom_right"
    fig.xaxis.axis_label = "seconds"
    return fig


def profile_layout(report: ProfileReport) -> Any:
    """The bokeh layout of *report*: timeline; bytes and requests; latency and memory."""
    from bokeh.layouts import column, row

    bytes_fig, req_fig = _per_array(report)
    return column(
        _timeline(report), row(bytes_fig, req_fig), row(_latency(report), _memory(report))
    )


def figures_html(report: ProfileReport) -> tuple[str, str]:
    """``(head, body)`` HTML of the figures with BokehJS inlined (works offline)."""
    from bokeh.embed import components
    from bokeh.resources import Resources

    script, div = components(profile_layout(report))
    return Resources(mode="inline", components=["bokeh"]).render() + script, div
