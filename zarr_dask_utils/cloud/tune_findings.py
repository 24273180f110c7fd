"""Findings of ``optimize_s3_access``: what the measurements say, with the next step."""

from __future__ import annotations

from zarr_dask_utils._core.pure.reports import Finding, sort_findings
from zarr_dask_utils.cloud.s3_settings import Choice
from zarr_dask_utils.cloud.tune_report import S3AccessReport

__all__ = ["tune_findings"]


def tune_findings(report: S3AccessReport, choice: Choice) -> tuple[Finding, ...]:
    """Findings from a report's measurements and the choice made."""
    out: list[Finding] = []
    base = report.trials.get(choice.baseline, {})
    if base.get("error"):
        out.append(
            Finding(
                "error",
                "tune-baseline-failed",
                report.array,
                f"Reading the pattern with the settings given failed: {base['error']}",
                "Check the credentials and the endpoint given in storage_options.",
            )
        )
    calls = base.get("calls") or {}
    heads, gets = int(calls.get("HeadObject", 0)), int(calls.get("GetObject", 0))
    if heads:
        out.append(
            Finding(
                "info",
                "s3-head-before-get",
                report.array,
                f"s3fs sent {heads} HEAD requests for {gets} GETs with the settings given: one "
                "extra round trip per chunk to learn its size (s3fs max_concurrency > 1).",
                "Pass storage_options max_concurrency=1 (zdu: -o max_concurrency=1); the "
                "tuned options below do.",
            )
        )
    facts = report.facts
    if facts and facts["chunk_bytes"] < facts["bdp"]:
        out.append(
            Finding(
                "info",
                "s3-small-chunks",
                report.array,
                f"Chunks of {facts['chunk_bytes']:,} B are smaller than what one connection "
                f"moves in a round trip ({facts['bdp']:,} B): each request mostly waits, so "
                "throughput comes from many requests in flight.",
                "Keep the tuned concurrency, or use larger chunks (`zdu analyze STORE`).",
            )
        )
    if report.consolidate:
        out.append(
            Finding(
                "info",
                "s3-not-consolidated",
                "",
                "The metadata is not consolidated: opening the hierarchy costs one request per "
                "group and array.",
                "Consolidate it (it writes one document): `zdu consolidate STORE`.",
            )
        )
    if report.cache:
        out.append(
            Finding(
                "info",
                "s3-rereads",
                report.array,
                f"The pattern reads chunks {facts['reread_ratio']:.1f} times on average: a "
                "read cache saves those requests.",
                "Wrap the store in a read cache on each worker.",
            )
        )
    if not facts.get("obstore_installed", True):
        out.append(
            Finding(
                "info",
                "obstore-missing",
                "",
                "obstore is not installed: only s3fs settings were tried.",
                "pip install 'zarr-dask-utils[s3]' to let the tuner try obstore too.",
            )
        )
    for name, reason in choice.rejected.items():
        if name != choice.baseline:
            out.append(Finding("warning", "tune-candidate-rejected", "", f"{name}: {reason}", None))
    return sort_findings(out)
