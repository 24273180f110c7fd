"""Figures of a :class:`~zarr_dask_utils.profiling.bench_report.StoreBenchmark` (bokeh).

:func:`store_benchmark_figures` draws the concurrency-vs-throughput curve (one worker and
every worker at once), the first-byte latency histogram and the measured vs predicted time of
each access pattern; :func:`standalone_html` makes an offline page of them (BokehJS inlined).
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bokeh.models import LayoutDOM

    from zarr_dask_utils.profiling.bench_report import StoreBenchmark

__all__ = ["figures_fragment", "standalone_html", "store_benchmark_figures"]

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_WIDTH = 560
_HEIGHT = 320


def _size(nbytes: int) -> str:
    """``512 B``, ``256 KiB``, ``4 MiB``."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes} B"


def _curve_figure(bench: StoreBenchmark) -> Any:
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    fig = figure(
        title="Throughput vs requests in flight",
        x_axis_type="log",
        x_axis_label="requests in flight per worker",
        y_axis_label="MB/s",
        width=_WIDTH,
        height=_HEIGHT + 80,
        tools="pan,wheel_zoom,box_zoom,reset,save",
    )
    series = 0
    for scope, op in (("worker", "read"), ("cluster", "read"), ("worker", "write")):
        for size in sorted({r["size"] for r in bench.steps(scope, op)}):
            rows = [r for r in bench.steps(scope, op) if r["size"] == size]
            if not rows:
                continue
            who = "1 worker" if scope == "worker" else f"{rows[0]['workers']} workers"
            source = ColumnDataSource(
                {
                    "level": [r["level"] for r in rows],
                    "mbs": [r["throughput"] / 1e6 for r in rows],
                    "requests": [r["requests"] for r in rows],
                }
            )
            colour = _COLOURS[series % len(_COLOURS)]
            label = f"{op}, {who}, {_size(size)} objects"
            fig.line("level", "mbs", source=source, color=colour, line_width=2, legend_label=label)
            fig.scatter("level", "mbs", source=source, color=colour, size=7, legend_label=label)
            series += 1
    fig.add_tools(HoverTool(tooltips=[("in flight", "@level"), ("MB/s", "@mbs{0,0.0}")]))
    if series:
        fig.add_layout(fig.legend[0], "below")  # under the plot: never over a point
    return fig


def _latency_figure(bench: StoreBenchmark) -> Any:
    import numpy as np
    from bokeh.plotting import figure

    ms = np.asarray(bench.latency, dtype=float) * 1e3
    bins = max(5, min(30, int(math.sqrt(len(ms))) * 2))
    counts, edges = np.histogram(ms, bins=bins)
    fig = figure(
        title="First-byte latency",
        x_axis_label="ms",
        y_axis_label="requests",
        width=_WIDTH,
        height=_HEIGHT,
        tools="pan,wheel_zoom,reset,save",
    )
    fig.quad(
        top=counts.tolist(),
        bottom=0,
        left=edges[:-1].tolist(),
        right=edges[1:].tolist(),
        fill_color=_COLOURS[0],
        line_color="white",
    )
    return fig


def _pattern_figure(bench: StoreBenchmark) -> Any:
    from bokeh.models import ColumnDataSource, FactorRange
    from bokeh.plotting import figure

    factors = []
    seconds = []
    colours = []
    kinds = []
    for row in bench.patterns:
        name = f"{row['array'] or '/'} {row['pattern']}"
        for kind, value, colour in (
            ("measured", row["seconds"], _COLOURS[0]),
            ("predicted", row["predicted_seconds"], _COLOURS[1]),
        ):
            factors.append((name, kind))
            seconds.append(value)
            colours.append(colour)
            kinds.append(kind)
    source = ColumnDataSource({"x": factors, "seconds": seconds, "colour": colours, "kind": kinds})
    fig = figure(
        title="Access patterns: measured vs predicted (calibrated)",
        x_range=FactorRange(factors=factors),
        y_axis_label="seconds",
        width=max(_WIDTH, 90 * len(factors)),
        height=_HEIGHT,
        tools="save,reset",
    )
    fig.vbar(
        x="x",
        top="seconds",
        width=0.8,
        source=source,
        fill_color="colour",
        line_color=None,
        legend_field="kind",
    )
    fig.legend.orientation = "horizontal"
    fig.add_layout(fig.legend[0], "above")
    fig.xaxis.major_label_orientation = 0.9
    return fig


def store_benchmark_figures(bench: StoreBenchmark) -> LayoutDOM:
    """A bokeh layout of the benchmark: curve, latency histogram, patterns.

    Parameters
    ----------
    bench
        A :class:`~zarr_dask_utils.profiling.bench_report.StoreBenchmark`.

    Returns
    -------
    bokeh.models.LayoutDOM
        A column of the figures that have data (a note when none has).
    """
    from bokeh.layouts import column, row
    from bokeh.models.widgets.markups import Div

    figures = []
    if bench.curve:
        figures.append(_curve_figure(bench))
    if bench.latency:
        figures.append(_latency_figure(bench))
    rows: list[Any] = [row(*figures)] if figures else []
    if bench.patterns:
        rows.append(_pattern_figure(bench))
    if not rows:
        rows.append(Div(text="<p>Nothing was measured.</p>"))
    return column(*rows)


def _summary_div(bench: StoreBenchmark) -> Any:
    from bokeh.models.widgets.markups import Div

    items = "".join(f"<li>{html.escape(line)}</li>" for line in bench.summary_lines())
    head = f"<h2>Store benchmark: {html.escape(bench.location)}</h2>"
    return Div(text=f"{head}<p>{html.escape(bench.engine)}</p><ul>{items}</ul>", width=1100)


def standalone_html(bench: StoreBenchmark) -> str:
    """A whole HTML page of summary and figures with BokehJS inlined (works offline)."""
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.resources import INLINE

    layout = column(_summary_div(bench), store_benchmark_figures(bench))
    return str(file_html(layout, resources=INLINE, title=f"zdu bench {bench.location}"))


def figures_fragment(bench: StoreBenchmark) -> str:
    """The figures as an HTML fragment with BokehJS inlined (for ``_repr_html_``)."""
    from bokeh.embed import components
    from bokeh.resources import Resources

    layout = store_benchmark_figures(bench)
    script, div = components(layout)
    drawn = bool(bench.curve or bench.latency or bench.patterns)
    # BokehJS alone (1.3 MB), plus the widgets bundle for the Div saying nothing was measured
    resources = (
        Resources(mode="inline", components=["bokeh"])
        if drawn
        else Resources(mode="inline", components=["bokeh", "bokeh-widgets"])
    )
    js = resources.render_js()
    return f"{js}{div}{script}"
