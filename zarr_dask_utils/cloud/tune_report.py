"""``S3AccessReport``: what ``optimize_s3_access`` measured, tried and chose."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zarr.abc.store import Store

from zarr_dask_utils._core.pure.reports import Finding, Report

__all__ = ["S3AccessReport"]

_SECRETS = ("key", "secret", "token", "aws_access_key_id", "aws_secret_access_key")


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:,.1f} MB/s"


@dataclass(frozen=True, slots=True, kw_only=True)
class S3AccessReport(Report):
    """Settings that read this S3 store fastest for one access pattern, measured on the workers.

    Attributes
    ----------
    pattern
        The access pattern tried (analyze_chunks' names: ``sequential``, ``time-series``…).
    array
        The array read by the trials.
    store_engine
        The store client chosen (``"s3fs"`` or ``"obstore"``) and why.
    facts
        Latency (s), throughput of one connection (bytes/s), the concurrency curve, chunk
        sizes vs the bandwidth-delay product, consolidated metadata, HEADs per GET given.
    candidates
        Every candidate tried (name, engine, concurrency, tuning options, why).
    trials
        Per candidate: requests, bytes, seconds, throughput, most requests in flight, S3
        calls by operation (s3fs), or the error that rejected it.
    winner
        Name of the chosen candidate (``"as-given"`` when nothing beat the given settings).
    storage_options
        The winner's ``storage_options`` without credentials: add your key/secret (or rely on
        the environment) and pass them on.
    zarr_config
        zarr config values of the winner (``zarr.config.set(report.zarr_config)``, on the
        workers too).
    dask_config
        ``dask.config`` values of zarr-dask-utils for the same concurrency.
    consolidate, cache
        Whether consolidating the metadata / caching reads is advised (never done here).
    cached
        Whether the winner reads through a read cache (``open_store`` then returns one).
    throughput_before, throughput_after
        Decoded bytes/s of the pattern with the settings given and with the winner.
    """

    pattern: str = ""
    array: str = ""
    store_engine: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)
    candidates: tuple[Mapping[str, Any], ...] = ()
    trials: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    winner: str = ""
    reason: str = ""
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    zarr_config: Mapping[str, Any] = field(default_factory=dict)
    dask_config: Mapping[str, Any] = field(default_factory=dict)
    consolidate: bool = False
    cache: bool = False
    cached: bool = False
    throughput_before: float | None = None
    throughput_after: float | None = None
    url: str = field(default="", repr=False)
    given_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    title = "S3 access tuning"

    @property
    def speedup(self) -> float | None:
        """Throughput after / before for the pattern."""
        if not self.throughput_before or self.throughput_after is None:
            return None
        return self.throughput_after / self.throughput_before

    def full_storage_options(self) -> dict[str, Any]:
        """The winner's options with the credentials and endpoint given (never printed)."""
        kept = {k: v for k, v in self.given_options.items() if k in _SECRETS}
        return {**kept, **self.storage_options}

    def open_store(self, *, read_only: bool = True) -> Store:
        """Open the store with the winning settings (a zarr ``Store``).

        zarr's concurrency is process-wide: use ``with zarr.config.set(report.zarr_config):``
        around the reads (and set it on the workers) for the measured throughput.
        """
        from zarr_dask_utils._core.storage.locations import open_store

        store = open_store(
            self.url, storage_options=self.full_storage_options(), read_only=read_only
        )
        if self.cached:
            from zarr_dask_utils.cloud.caching import smart_caching

            return smart_caching(store)
        return store

    def options_json(self) -> str:
        """``storage_options`` as JSON, ready to paste (credentials left out)."""
        return json.dumps(dict(self.storage_options), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe report; the given options (credentials) and the URL stay out."""
        data = Report.to_dict(self)
        data.pop("given_options", None)
        data.pop("url", None)
        data["speedup"] = self.speedup
        return data

    def summary_lines(self) -> Sequence[str]:
        """Facts, trials, winner and the settings to paste."""
        f = self.facts
        lines = [f"store engine: {self.store_engine}"]
        if "latency" in f:
            lines.append(
                f"latency {f['latency'] * 1e3:,.1f} ms, one connection "
                f"{_rate(f['connection_rate'])}, bandwidth-delay product {f['bdp']:,} B vs "
                f"chunks {f['chunk_bytes']:,} B, "
                f"curve knee at {f['knee']} in flight, consolidated: {f['consolidated']}"
            )
        lines.append(f"pattern {self.pattern!r} on /{self.array}:")
        for name, t in self.trials.items():
            if t.get("error"):
                lines.append(f"  {name}: rejected ({t['error']})")
                continue
            calls = t.get("calls")
            heads = f", {calls.get('HeadObject', 0)} HEAD" if calls is not None else ""
            lines.append(
                f"  {name}: {_rate(t['throughput'])}, {t['requests']} requests{heads}, "
                f"{t['max_in_flight']} in flight at most, {t['seconds']:.3f} s"
            )
        speed = f" ({self.speedup:.2f}x)" if self.speedup else ""
        lines.append(
            f"chosen: {self.winner}: {_rate(self.throughput_before)} -> "
            f"{_rate(self.throughput_after)}{speed}; {self.reason}"
        )
        lines.append(f"storage_options: {self.options_json()}")
        lines.append(f"zarr config: {json.dumps(dict(self.zarr_config))}")
        lines.append(f"dask config: {json.dumps(dict(self.dask_config))}")
        return lines

    def with_findings(self, findings: Sequence[Finding]) -> S3AccessReport:
        """A copy with *findings*."""
        return dataclasses.replace(self, findings=tuple(findings))
