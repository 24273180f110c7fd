"""``ProfileReport``: what a profiled call spent its time on, and the verdict."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from zarr_dask_utils._core.pure.reports import Report
from zarr_dask_utils.profiling.summaries import IOStats, PrefixTime, TaskRun, WorkerMemory
from zarr_dask_utils.profiling.verdict import ProfileFacts, Verdict

if TYPE_CHECKING:
    from zarr_dask_utils.profiling.collect import DaskReport

__all__ = ["ProfileReport"]

_SHOW_DASK = """
<button id='zdu-show-dask' type='button'>Show the Dask performance report</button>
<div id='zdu-dask-frame'></div>
<script>
document.getElementById('zdu-show-dask').addEventListener('click', function () {
  var b64 = window.ZDU_DASK_REPORT;
  var bytes = Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });
  var frame = document.createElement('iframe');
  frame.title = 'Dask performance report';
  frame.style.cssText = 'width:100%;height:1000px;border:1px solid #ccc';
  frame.srcdoc = new TextDecoder('utf-8').decode(bytes);
  document.getElementById('zdu-dask-frame').replaceChildren(frame);
  this.remove();
});
</script>
"""


def _embedded(dask_html: str) -> str:
    """Dask's report as base64 inside the page, put in a frame when the button is pressed."""
    b64 = base64.b64encode(dask_html.encode("utf-8")).decode("ascii")
    return f"<script>window.ZDU_DASK_REPORT = '{b64}';</script>{_SHOW_DASK}"


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _io_line(s: IOStats) -> str:
    line = (
        f"{s.name}: {s.requests} request(s), read {_mb(s.bytes_read)}, wrote "
        f"{_mb(s.bytes_written)}, latency p50 {s.p50_ms:.2f} / p95 {s.p95_ms:.2f} / "
        f"p99 {s.p99_ms:.2f} ms"
    )
    return line + (f", decode ~{s.decode_seconds:.3f} s" if s.decode_seconds else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileReport(Report):
    """The profile of one call: time, store requests, memory and what bounds it.

    Attributes
    ----------
    wall_seconds
        Wall time of the call.
    verdict
        What bounds the run (latency, bandwidth, decode, task overhead, memory), with the
        evidence and the next step.
    facts
        The numbers the verdict was decided from.
    prefixes
        Task time per key prefix: compute / transfer / waiting.
    arrays, stores
        Store requests per array and per store: count, bytes, latency percentiles.
    memory
        Peak memory (and the series) per worker.
    requests_by_op
        Store requests per kind (``get``, ``set``, ``list_dir``…).
    cluster_memory
        ``(seconds, bytes)`` of the whole cluster: the workers' memory-monitor samples summed.
    tasks
        The task stream (for the timeline figure).
    latencies_ms
        Latency of every store request (for the histogram).
    dask_report
        Dask's offline performance report of the call, rendered by the scheduler when first
        asked for (:attr:`dask_report_html`).
    result
        What the profiled function returned (not rendered).
    """

    wall_seconds: float = 0.0
    verdict: Verdict = field(default_factory=lambda: Verdict("inconclusive", "not run"))
    facts: ProfileFacts = field(default_factory=lambda: ProfileFacts(0.0))
    prefixes: tuple[PrefixTime, ...] = ()
    arrays: tuple[IOStats, ...] = ()
    stores: tuple[IOStats, ...] = ()
    memory: tuple[WorkerMemory, ...] = ()
    requests_by_op: dict[str, int] = field(default_factory=dict)
    cluster_memory: tuple[tuple[float, int], ...] = field(default=(), repr=False)
    tasks: tuple[TaskRun, ...] = field(default=(), repr=False)
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)
    dask_report: DaskReport | None = field(default=None, repr=False, compare=False)
    result: Any = field(default=None, repr=False, compare=False)

    title = "Profile"

    @property
    def dask_report_html(self) -> str:
        """Dask's offline performance report of the call (rendered on first use; ``""``: none).

        The scheduler renders it from what it keeps since the call started, so ask while the
        cluster that ran the call is up (an embedded cluster started for the call had it
        rendered before it closed).
        """
        return self.dask_report.html() if self.dask_report is not None else ""

    @property
    def requests(self) -> int:
        """Store requests made by the call."""
        return sum(s.requests for s in self.stores)

    @property
    def bytes_read(self) -> int:
        """Bytes read from stores."""
        return sum(s.bytes_read for s in self.stores)

    @property
    def bytes_written(self) -> int:
        """Bytes written to stores."""
        return sum(s.bytes_written for s in self.stores)

    def summary_lines(self) -> Sequence[str]:
        """Wall time, verdict, then time per prefix, stores, arrays and memory."""
        lines = [
            f"wall time {self.wall_seconds:.2f} s; {self.requests} store request(s), read "
            f"{_mb(self.bytes_read)}, wrote {_mb(self.bytes_written)}",
            *str(self.verdict).splitlines(),
        ]
        lines.extend(
            f"tasks {p.prefix}: {p.tasks} task(s), compute {p.compute:.3f} s, transfer "
            f"{p.transfer:.3f} s, waiting {p.waiting:.3f} s"
            for p in self.prefixes
        )
        lines.extend(f"store {_io_line(s)}" for s in self.stores)
        lines.extend(f"array {_io_line(s)}" for s in self.arrays)
        lines.extend(
            f"memory {m.worker}: peak {_mb(m.peak_bytes)}"
            + (f" of {_mb(m.limit_bytes)} ({m.fraction:.0%})" if m.limit_bytes else "")
            for m in self.memory
        )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Summaries as JSON-safe data (series, the task stream and the Dask HTML left out)."""
        return {
            "report": type(self).__name__,
            "ok": self.ok,
            "location": self.location,
            "engine": self.engine,
            "findings": [f.to_dict() for f in self.findings],
            "counts": self.counts(),
            "wall_seconds": self.wall_seconds,
            "requests": self.requests,
            "requests_by_op": dict(self.requests_by_op),
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "verdict": self.verdict.to_dict(),
            "facts": {name: getattr(self.facts, name) for name in ProfileFacts.__slots__},
            "prefixes": [p.to_dict() for p in self.prefixes],
            "arrays": [s.to_dict() for s in self.arrays],
            "stores": [s.to_dict() for s in self.stores],
            "memory": [m.to_dict() for m in self.memory],
        }

    def _repr_html_(self) -> str:
        esc = html.escape
        v = self.verdict
        steps = "".join(f"<li>{esc(s)}</li>" for s in v.next_steps)
        evidence = "".join(f"<li>{esc(e)}</li>" for e in v.evidence)
        rows = "".join(
            f"<tr><td><code>{esc(s.name)}</code></td><td>{s.requests}</td>"
            f"<td>{_mb(s.bytes_read)}</td><td>{_mb(s.bytes_written)}</td>"
            f"<td>{s.p50_ms:.2f}</td><td>{s.p95_ms:.2f}</td><td>{s.p99_ms:.2f}</td>"
            f"<td>{s.decode_seconds:.3f}</td></tr>"
            for s in (*self.stores, *self.arrays)
        )
        prefixes = "".join(
            f"<tr><td><code>{esc(p.prefix)}</code></td><td>{p.tasks}</td>"
            f"<td>{p.compute:.3f}</td><td>{p.transfer:.3f}</td><td>{p.waiting:.3f}</td></tr>"
            for p in self.prefixes
        )
        return (
            f"<div class='zdu-profile'><strong>Profile</strong> of <code>{esc(self.location)}"
            f"</code>: {self.wall_seconds:.2f} s<br><small>engine: {esc(self.engine)}</small>"
            f"<h4 style='margin:.5em 0'>Verdict: {esc(v.kind)}</h4><p>{esc(v.summary)}</p>"
            f"<p>Evidence:</p><ul>{evidence}</ul><p>Next steps:</p><ul>{steps}</ul>"
            "<table><thead><tr><th>store / array</th><th>requests</th><th>read</th>"
            "<th>written</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>decode s</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
            "<table><thead><tr><th>task prefix</th><th>tasks</th><th>compute s</th>"
            f"<th>transfer s</th><th>waiting s</th></tr></thead><tbody>{prefixes}</tbody>"
            "</table></div>"
        )

    def save_html(
        self,
        path: str | os.PathLike[str],
        *,
        dask_report: Literal["embed", "link"] = "embed",
    ) -> Path:
        """Write one HTML file that works offline: this report, its figures, Dask's report.

        Parameters
        ----------
        path
            The file to write.
        dask_report
            ``"embed"``: Dask's performance report inside the file, shown in a frame on a
            click (it draws dozens of figures: loading it with the page would make the page
            slow); ``"link"``: written beside it as ``<name>.dask.html`` and linked.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        from zarr_dask_utils.profiling.figures import figures_html

        path = Path(path)
        head, body = figures_html(self)
        dask_html = self.dask_report_html
        if not dask_html:
            why = self.dask_report.why_missing if self.dask_report is not None else ""
            dask = "<p>No Dask performance report was recorded" + (
                f": {html.escape(why)}.</p>" if why else ".</p>"
            )
        elif dask_report == "link":
            beside = path.with_name(path.stem + ".dask.html")
            beside.write_text(dask_html, encoding="utf-8")
            dask = f"<p><a href='{html.escape(beside.name)}'>Dask performance report</a></p>"
        else:
            dask = _embedded(dask_html)
        path.write_text(
            "<!doctype html><html><head><meta charset='utf-8'><title>zdu profile</title>"
            f"{head}</head><body>{self._repr_html_()}<h3>Figures</h3>{body}"
            f"<h3>Dask performance report</h3>{dask}</body></html>",
            encoding="utf-8",
        )
        return path
