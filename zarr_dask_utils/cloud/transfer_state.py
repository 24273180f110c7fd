"""The target of a download: ours to resume, empty, or someone's data (refused).

A download first writes ``.zdu-download/partial.json`` (a token of the source and the chosen
nodes) into the target; copy tasks then add records under ``.zdu-download/done/`` as objects
land, and the prefix is removed once the metadata documents are written.  A rerun with the
same token resumes from the records; a partial target of another download is cleared and
started again.  A target holding data and no marker is a finished earlier copy when every
object in it is one this download would write, of the same size (the caller then checks the
hashes: an up-to-date check that copies only what is missing); anything else is refused
unless ``overwrite=True`` (and then only when every key in it is Zarr's, as
``rechunk_array`` does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.chunkgrid import is_partial_key
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.pure.naming import option_text
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.overwrite import check_overwrite
from zarr_dask_utils._core.storage.storeio import (
    delete_keys,
    read_keys,
    storage_errors,
    write_keys,
)
from zarr_dask_utils.cloud.transfer_plan import MARKER_PREFIX, ObjectInfo

__all__ = [
    "PARTIAL",
    "Record",
    "TargetState",
    "inspect_target",
    "refuse_differing",
    "start_marker",
]

PARTIAL = f"{MARKER_PREFIX}/partial.json"
_DONE = f"{MARKER_PREFIX}/done/"

#: What a run recorded about one copied object: size, hash, source version.
Record = tuple[int, str, str | None]


@dataclass(frozen=True)
class TargetState:
    """What the target holds before the copy.

    Attributes
    ----------
    resumed
        A partial download of the same source was found: its records are used.
    restarted
        A partial download of another source was found and cleared.
    records
        Key → record of objects a previous run copied and verified.
    existing
        The target's objects (markers and temp files left out) after any clearing.
    in_place
        No marker, and every object at the target is a selected key of the same size: an
        earlier finished copy, to be checked by hash and completed (an up-to-date check).
    """

    resumed: bool = False
    in_place: bool = False
    restarted: bool = False
    records: dict[str, Record] = field(default_factory=dict)
    existing: dict[str, ObjectInfo] = field(default_factory=dict)


def _read_records(target: Location, names: list[str]) -> dict[str, Record]:
    raw = read_keys(target.open_store(), [join_key(target.path, n) for n in names])
    out: dict[str, Record] = {}
    for value in raw.values():
        if value is None:
            continue
        try:
            batch = json.loads(value)
        except ValueError:  # a record cut short by a kill: its objects are copied again
            continue
        for key, (size, digest, version) in batch.items():
            out[key] = (int(size), str(digest), version)
    return out


def _differing(listing: Mapping[str, ObjectInfo], selected: Mapping[str, ObjectInfo]) -> list[str]:
    """Target keys this download would not write as they are (another key or size)."""
    return [k for k in sorted(listing) if k not in selected or selected[k][0] != listing[k][0]]


def refuse_differing(target: Location, listing: Mapping[str, ObjectInfo], keys: list[str]) -> None:
    """Raise when *keys* (target objects that differ from the source) is not empty.

    Raises
    ------
    InvalidOptionError
        Names up to 5 of the keys and their count; nothing is written.
    """
    if not keys:
        return
    shown = ", ".join(keys[:5]) + (", …" if len(keys) > 5 else "")
    raise InvalidOptionError(
        f"The target {target.display} already holds {len(listing)} object(s) and no "
        f"partial-download marker, and {len(keys)} of them differ from the source or are not "
        f"part of this download ({shown}), so it may be someone's data. Nothing was written. "
        f"Choose an empty target, or pass {option_text('overwrite', True)} to replace it."
    )


def _full(target: Location, keys: list[str]) -> list[str]:
    return [join_key(target.path, k) for k in keys]


def inspect_target(
    target: Location,
    listing: Mapping[str, ObjectInfo],
    token: str,
    *,
    selected: Mapping[str, ObjectInfo],
    overwrite: bool,
    resume: bool,
    dry_run: bool,
) -> TargetState:
    """Decide what the existing target is; clear it when that is safe and asked for.

    Parameters
    ----------
    target
        The target location (writable unless *dry_run*).
    listing
        Its objects, keys relative to its node path.
    token
        Identifies this download (source and chosen nodes).
    selected
        The source objects this download writes (keys relative to the node paths).
    overwrite
        Replace a Zarr hierarchy already at the target.
    resume
        Use the records of a partial download of the same source (``False``: start over).
    dry_run
        Decide only: nothing is deleted.

    Raises
    ------
    InvalidOptionError
        The target holds data and no download marker, some of it not what this download
        would write (another key or size), and *overwrite* is not set; or it holds files
        that are not Zarr's.
    """
    keys = sorted(listing)
    with storage_errors(target.display):
        store = target.open_store()
        marker = read_keys(store, [join_key(target.path, PARTIAL)]) if PARTIAL in listing else {}
        raw = next(iter(marker.values()), None)
        if raw is not None:
            try:
                previous = json.loads(raw).get("token")
            except ValueError:
                previous = None
            temps = [k for k in keys if is_partial_key(k)]
            data = {k: v for k, v in listing.items() if not k.startswith(f"{MARKER_PREFIX}/")}
            data = {k: v for k, v in data.items() if not is_partial_key(k)}
            if previous == token and resume:
                if not dry_run:  # a killed writer leaves "<key>.<uuid>.partial" files
                    delete_keys(store, _full(target, temps))
                records = _read_records(target, [k for k in keys if k.startswith(_DONE)])
                return TargetState(resumed=True, records=records, existing=data)
            if not dry_run:
                delete_keys(store, _full(target, keys))
            return TargetState(restarted=True)
        if keys:
            if not overwrite:
                refuse_differing(target, listing, _differing(listing, selected))
                return TargetState(in_place=True, existing=dict(listing))
            check_overwrite(store, target.path, target.display, _full(target, keys))
            if not dry_run:
                delete_keys(store, _full(target, keys))
        return TargetState()


def start_marker(target: Location, token: str, source: str) -> None:
    """Write the partial-download marker (before the first object is copied)."""
    doc = {"token": token, "source": source, "writer": "zarr-dask-utils parallel_download"}
    with storage_errors(target.display):
        write_keys(target.open_store(), {join_key(target.path, PARTIAL): json.dumps(doc).encode()})
