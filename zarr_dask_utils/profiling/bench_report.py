"""``StoreBenchmark``: what ``benchmark_store`` measured, as text, JSON, HTML and figures."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zarr_dask_utils._core.pure.cost_model import CostParams
from zarr_dask_utils._core.pure.reports import Finding, Report
from zarr_dask_utils.profiling.bench_plan import percentiles

__all__ = ["StoreBenchmark", "benchmark_findings"]


def _rate(value: float) -> str:
    return f"{value / 1e6:,.1f} MB/s"


def _ms(value: float) -> str:
    return f"{value * 1e3:,.2f} ms"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreBenchmark(Report):
    """What :func:`~zarr_dask_utils.benchmark_store` measured on a store, from the workers.

    Attributes
    ----------
    workers
        Worker processes that ran the requests (``0``: threads in this process).
    latency
        First-byte times (s) of one-byte reads, one at a time.
    listing
        ``{"seconds", "keys", "objects", "bytes"}`` of a full listing.
    curve
        One row per step: ``scope`` (``"worker"``: one worker; ``"cluster"``: every worker at
        once), ``op`` (``"read"``/``"write"``), ``level`` (requests in flight per worker),
        ``size``, ``requests``, ``bytes``, ``seconds``, ``throughput`` (bytes/s).
    patterns
        Per array and access pattern: measured ``requests``, ``bytes_read``, ``seconds``
        beside the ``predicted_*`` of the cost model calibrated with these measurements.
    params
        The calibrated cost-model parameters (see :meth:`cost_params`).
    scratch
        The scratch prefix written and removed (``None`` without ``write``).
    requests
        Every request the benchmark sent to the store, all stages together.
    """

    workers: int = 0
    latency: tuple[float, ...] = ()
    listing: Mapping[str, Any] | None = None
    curve: tuple[Mapping[str, Any], ...] = ()
    patterns: tuple[Mapping[str, Any], ...] = ()
    params: Mapping[str, Any] | None = None
    scratch: str | None = None
    requests: int = 0
    title = "Store benchmark"

    # --- the calibration hook -------------------------------------------------------------

    def cost_params(self) -> CostParams:
        """Cost-model parameters measured here: pass ``params=bench`` to the estimators."""
        return CostParams(**dict(self.params or {}))

    # --- views ------------------------------------------------------------------------------

    def latency_percentiles(self) -> dict[str, float]:
        """``{"p50", "p95", "p99"}`` of the first-byte latency (s)."""
        return percentiles(self.latency)

    def steps(self, scope: str = "worker", op: str = "read") -> list[Mapping[str, Any]]:
        """Curve rows of one scope and operation, by size then level."""
        rows = [r for r in self.curve if r["scope"] == scope and r["op"] == op]
        return sorted(rows, key=lambda r: (r["size"], r["level"]))

    def best(self, scope: str = "worker", op: str = "read") -> Mapping[str, Any] | None:
        """The step with the highest throughput."""
        rows = self.steps(scope, op)
        return max(rows, key=lambda r: r["throughput"]) if rows else None

    def summary_lines(self) -> Sequence[str]:
        """Latency, listing, best throughput per scope, writes and predicted vs measured."""
        lines = []
        pct = self.latency_percentiles()
        if pct:
            lines.append(
                "first-byte latency "
                + ", ".join(f"{k} {_ms(v)}" for k, v in pct.items())
                + f" ({len(self.latency)} requests)"
            )
        if self.listing:
            lines.append(
                f"listing: {self.listing['keys']} keys in {_ms(self.listing['seconds'])} "
                f"({self.listing['objects']} objects, {self.listing['bytes']:,} B)"
            )
        for scope, op in (("worker", "read"), ("cluster", "read"), ("worker", "write")):
            top = self.best(scope, op)
            if top is None:
                continue
            single = [r for r in self.steps(scope, op) if r["level"] == 1]
            base = f", 1 in flight {_rate(single[0]['throughput'])}" if single else ""
            who = "one worker" if scope == "worker" else f"{top['workers']} workers at once"
            lines.append(
                f"{op} ({who}): best {_rate(top['throughput'])} at {top['level']} in flight "
                f"per worker, {top['size']:,} B objects{base}"
            )
        for row in self.patterns:
            lines.append(
                f"/{row['array']} {row['pattern']}: measured {row['requests']} requests, "
                f"{row['bytes_read']:,} B, {row['seconds']:.3f} s; predicted "
                f"{row['predicted_requests']} requests, {row['predicted_bytes_read']:,} B, "
                f"{row['predicted_seconds']:.3f} s" + (" (cut to budget)" if row["cut"] else "")
            )
        if self.params:
            p = self.params
            lines.append(
                f"calibrated cost model: latency {_ms(p['latency'])}, bandwidth "
                f"{_rate(p['bandwidth'])}, decode {_rate(p['decode_rate'])}, concurrency "
                f"{p['concurrency']}, compression {p['compression_ratio']:.2f}x"
            )
        if self.scratch:
            lines.append(f"writes went to {self.scratch!r}, removed afterwards")
        lines.append(f"{self.requests} requests sent to the store in all")
        return lines

    # --- HTML --------------------------------------------------------------------------------

    def _table(self) -> str:
        esc = html.escape
        head = (
            "<tr><th>array</th><th>pattern</th><th>requests (measured / predicted)</th>"
            "<th>bytes read (measured / predicted)</th><th>seconds (measured / predicted)</th></tr>"
        )
        rows = "".join(
            f"<tr><td>/{esc(str(r['array']))}</td><td>{esc(str(r['pattern']))}</td>"
            f"<td>{r['requests']} / {r['predicted_requests']}</td>"
            f"<td>{r['bytes_read']:,} / {r['predicted_bytes_read']:,}</td>"
            f"<td>{r['seconds']:.3f} / {r['predicted_seconds']:.3f}</td></tr>"
            for r in self.patterns
        )
        return f"<table>{head}{rows}</table>" if rows else ""

    def _repr_html_(self) -> str:
        """Summary, predicted-vs-measured table and the figures (BokehJS inlined: offline)."""
        from zarr_dask_utils.profiling.bench_figures import figures_fragment

        return Report._repr_html_(self) + self._table() + figures_fragment(self)

    def save_html(self, path: str | os.PathLike[str]) -> Path:
        """Write a self-contained HTML page (BokehJS inlined) with the summary and figures.

        Parameters
        ----------
        path
            The file to write.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        from zarr_dask_utils.profiling.bench_figures import standalone_html

        out = Path(path)
        out.write_text(standalone_html(self), encoding="utf-8")
        return out


def benchmark_findings(bench: StoreBenchmark, concurrency: int) -> list[Finding]:
    """Advice from the measurements: more requests in flight, patterns cut to the budget."""
    findings = []
    for scope in ("worker", "cluster"):
        rows = bench.steps(scope, "read")
        at_zarr = [r for r in rows if r["level"] <= concurrency]
        top = bench.best(scope, "read")
        if not at_zarr or top is None:
            continue
        now = max(at_zarr, key=lambda r: r["level"])
        gain = top["throughput"] / max(now["throughput"], 1.0)
        if top["level"] > now["level"] and gain >= 1.5:
            findings.append(
                Finding(
                    "info",
                    "bench-more-concurrency",
                    "",
                    f"Reads reached {top['throughput'] / 1e6:,.1f} MB/s with {top['level']} "
                    f"requests in flight per worker ({scope}), {gain:.1f}x the "
                    f"{now['throughput'] / 1e6:,.1f} MB/s at zarr's concurrency ({concurrency}).",
                    f"Raise zarr's async.concurrency: zarr.config.set({{'async.concurrency': "
                    f"{top['level']}}}) on the workers (or in the dask config they load).",
                )
            )
    cut = sorted({f"/{r['array']} {r['pattern']}" for r in bench.patterns if r["cut"]})
    if cut:
        findings.append(
            Finding(
                "info",
                "bench-pattern-cut",
                "",
                f"{len(cut)} pattern read(s) were cut along time to the byte budget: "
                + ", ".join(cut[:5]),
                "Pass a larger pattern_budget to read more of each array.",
            )
        )
    return findings
