"""Verify a reproducible random sample of one array's chunks, and say what it rules out."""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from dask.utils import parse_bytes
from distributed import Client

from zarr_dask_utils._core.checks.codecs import (
    codec_unavailable_finding,
    unavailable_codecs,
)
from zarr_dask_utils._core.compute.operation import operation
from zarr_dask_utils._core.config import get_option
from zarr_dask_utils._core.decoding.pipeline_decoder import grid_of, open_array
from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.keys import ARRAY_V2, ZARR_JSON, parse_document
from zarr_dask_utils._core.pure.partition import largest_first, plan_batches
from zarr_dask_utils._core.pure.reports import Finding, sort_findings
from zarr_dask_utils._core.storage.locations import StoreLike
from zarr_dask_utils._core.storage.storeio import storage_errors
from zarr_dask_utils.integrity.findings import decode_findings
from zarr_dask_utils.integrity.misread import misread_findings
from zarr_dask_utils.integrity.plan import (
    miss_probability,
    name_missing,
    sample_indices,
    smallest_detectable,
)
from zarr_dask_utils.integrity.reports import ChunkSampleReport
from zarr_dask_utils.integrity.scan import ask_for_processes, run_scan

__all__ = ["sample_statement", "verify_chunks"]


#: zarr-python's warning about format 2 documents beside zarr.json (the Rust zarrs writes both):
#: zarr reads zarr.json, as zdu does, and ``validate`` reports ``v2-document-shadowed`` itself
_SHADOWED_V2 = r"Both zarr\.json .* Zarr v3 will be used"


def sample_statement(
    n_total: int,
    n_sampled: int,
    n_bad_found: int,
    *,
    n_decoded: int | None = None,
    n_missing: int = 0,
) -> tuple[dict[int, float], int, str]:
    """Miss probabilities for a few numbers of bad chunks, the 95 % threshold, and a sentence.

    *n_decoded* (default: every sampled object that is neither bad nor missing) and
    *n_missing* (sampled positions with no stored object) keep the sentence true: nothing is
    called verified when nothing was decoded, and "every" is said only of at least one chunk.
    """
    ks = sorted({k for k in (1, 2, 5, 10, 50, 100) if k <= n_total})
    probs = {k: miss_probability(n_total, n_sampled, k) for k in ks}
    detectable = smallest_detectable(n_total, n_sampled)
    if n_decoded is None:
        n_decoded = max(0, n_sampled - n_bad_found - n_missing)
    not_stored = (
        f"; {n_missing} sampled position(s) hold no stored chunk and read as the fill value"
        if n_missing
        else ""
    )
    if n_bad_found:
        text = (
            f"{n_bad_found} bad chunk(s) found in the sample: the array is damaged; run "
            "`zdu check --deep` to find every bad chunk"
        )
    elif n_total == 0:
        text = "the array's chunk grid is empty (a zero-length dimension): nothing to decode"
    elif n_decoded == 0:
        text = (
            f"no chunk was decoded, so nothing about the stored data was verified: none of "
            f"the {n_sampled} sampled position(s) holds a stored chunk (they read as the fill "
            "value; `zdu check` lists what is stored)"
        )
    elif n_sampled >= n_total:
        text = (
            f"all {n_decoded} stored chunk(s) of the {n_total} in the grid were decoded without "
            f"error{not_stored}"
        )
    else:
        shown = ", ".join(f"{k} bad: {p:.1%}" for k, p in probs.items())
        text = (
            f"no bad chunk in {n_sampled} of {n_total} ({n_decoded} decoded{not_stored}): "
            f"this rules out {detectable} or more bad "
            f"chunks with 95 % confidence, but not fewer (chance that all bad chunks were missed: "
            f"{shown}); deleted chunks read as fill value and are not detectable this way"
        )
    return probs, detectable, text


def _unavailable(documents: Mapping[str, Any]) -> Finding | None:
    """The ``codec-unavailable`` finding of the root array's document, if its codec is missing."""
    for name in (ZARR_JSON, ARRAY_V2):
        doc = parse_document(documents.get(name))[0]
        if isinstance(doc, Mapping) and (missing := unavailable_codecs(doc)):
            return codec_unavailable_finding(name, "", missing)
    return None


def _documents_of(opened: Any) -> dict[str, Any]:
    """The opened array's documents as the document checks take them (keys at its root)."""
    meta = opened.metadata.to_dict()
    name = ARRAY_V2 if meta.get("zarr_format") == 2 else ZARR_JSON
    return {name: meta, ".zattrs": dict(opened.attrs)}


def verify_chunks(
    array: StoreLike,
    *,
    sample_rate: float = 0.1,
    seed: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    client: Client | None = None,
    progress: bool | None = None,
) -> ChunkSampleReport:
    """Decode a reproducible random sample of an array's stored objects (chunks or shards).

    Parameters
    ----------
    array
        The array: a zarr Array, or a path/URL whose root is the array.
    sample_rate
        Fraction of the grid to sample (at least one object), ``0 < rate <= 1``.
    seed
        Seed of the sample; ``None`` draws one and records it in the report, so the same
        sample can be checked again.
    storage_options
        fsspec options for URLs.
    client
        Dask client.
    progress
        Show a progress bar.

    Returns
    -------
    ChunkSampleReport
        Bad keys as findings, the seed, and the probability of having missed *k* bad chunks.
    """
    if not 0 < sample_rate <= 1:
        raise InvalidOptionError(f"sample_rate={sample_rate} must be in (0, 1], e.g. 0.1.")
    seed = secrets.randbits(32) if seed is None else int(seed)
    with operation("verify-chunks", client=client, progress=progress) as op:
        location = op.open(array, storage_options=storage_options)
        if op.probes["source"].root_kind == "group":
            raise InvalidOptionError(
                f"{location.display} is a group: verify_chunks samples one array. Pass the "
                "array's own path or URL (e.g. 'store.zarr/temperature'), or on the command "
                "line `zdu verify-chunks STORE --array temperature`; `zdu info STORE` lists them."
            )
        unavailable = _unavailable(op.probes["source"].documents)
        if unavailable is not None:  # not checkable here: decode nothing, blame nothing
            return ChunkSampleReport(
                location=location.display,
                engine="none: no chunk can be decoded here",
                findings=(unavailable,),
                array=location.path,
                seed=seed,
                sample_rate=sample_rate,
                statement="no chunk was decoded: the array's codec is not installed here, so "
                "nothing about the stored data was verified (it is neither healthy nor corrupt)",
            )
        with storage_errors(location.display), warnings.catch_warnings():
            warnings.filterwarnings("ignore", _SHADOWED_V2, UserWarning)
            opened = open_array(location.open_store(), location.path, "", None)
        misread = misread_findings(location, _documents_of(opened))
        grid = grid_of(opened, "")
        fmt = opened.metadata.zarr_format
        picked = sample_indices(grid.nchunks, sample_rate, seed)
        per = max(1, math.prod(grid.chunks) * opened.dtype.itemsize)
        batch = parse_bytes(str(get_option("integrity.batch-bytes")))
        sample = {"": (len(picked), per)}  # batches over positions in `picked`
        ask_for_processes(op, sample)  # before op.threads starts the client
        batches = largest_first(plan_batches(sample, batch, op.threads), sample)
        work = [tuple(("", fmt, picked[x.start : x.stop]) for x in b) for b in batches]
        decoded, engine = run_scan(op, work, stats=False)
    probs, detectable, text = sample_statement(
        grid.nchunks,
        len(picked),
        decoded.bad_count,
        n_decoded=decoded.decoded,
        n_missing=decoded.missing,
    )
    findings = decode_findings(decoded)
    # its chunks decode, but into wrong values (netCDF-C's shuffle 0): not a healthy array
    findings += [replace(f, location=f.location or location.path) for f in misread]
    if decoded.missing:
        named = name_missing(decoded.missing_keys, decoded.missing)
        findings.append(
            Finding(
                "info",
                "chunks-missing",
                location.path,
                f"{decoded.missing} of the {len(picked)} sampled chunk position(s) are not "
                f"stored ({named}) and read as the fill value",
            )
        )
    return ChunkSampleReport(
        location=location.display,
        engine=engine,
        findings=sort_findings(findings),
        array=location.path,
        seed=seed,
        sample_rate=sample_rate,
        grid_objects=grid.nchunks,
        sampled=len(picked),
        decoded=decoded.decoded,
        missing=decoded.missing,
        missing_keys=tuple(decoded.missing_keys),
        bad=decoded.bad_count,
        miss_probabilities=probs,
        detectable_95=detectable,
        statement=text,
    )
