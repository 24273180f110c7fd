"""Interruption safety of a job writing a new target: the partial-target marker, resume, cleanup.

Shared by every feature that writes a target in many tasks and must survive a crash
(``rechunk_array`` today, conversion next); the marker names keep their ``rechunk`` spelling
because existing partial targets carry them.

A run first writes ``.zdu-rechunk/partial.json`` (with a token of the whole job) in the target,
then one empty ``.zdu-rechunk/done/...`` key per finished block; the metadata documents come
last.  A rerun with the same token resumes (skips done blocks); another token means the
partial target belongs to a different run and is removed first.
"""

from __future__ import annotations

import json

from zarr.core.sync import sync

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.chunkgrid import is_partial_key
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.pure.naming import option_text
from zarr_dask_utils._core.storage.locations import Location
from zarr_dask_utils._core.storage.overwrite import check_overwrite
from zarr_dask_utils._core.storage.storeio import (
    delete_keys,
    list_keys,
    read_keys,
    storage_errors,
    write_keys,
)

__all__ = ["MARKER_PREFIX", "PARTIAL", "prepare_target", "prepare_temp", "remove_prefix"]

MARKER_PREFIX = ".zdu-rechunk"
PARTIAL = f"{MARKER_PREFIX}/partial.json"


def prepare_target(target: Location, token: str, overwrite: bool) -> tuple[set[str], bool, bool]:
    """Check the target; return ``(done keys, resumed, restarted)`` after cleaning it if needed."""
    store = target.open_store()
    prefix = target.path
    with storage_errors(target.display):
        keys = list_keys(store, prefix)
        rel = [k[len(prefix) + 1 :] if prefix else k for k in keys]
        marker = read_keys(store, [f"{prefix}/{PARTIAL}" if prefix else PARTIAL])
        raw = next(iter(marker.values()))
        if raw is not None:
            previous = json.loads(raw).get("token")
            if previous == token:
                # a killed writer leaves "<key>.<uuid>.partial" files: ours, never complete
                delete_keys(store, [k for k in keys if is_partial_key(k)])
                done = {k for k in rel if k.startswith(f"{MARKER_PREFIX}/done/")}
                done = {k for k in done if not is_partial_key(k)}
                return done, True, False
            delete_keys(store, keys)
            return set(), False, True
        if keys:
            if not overwrite:
                raise InvalidOptionError(
                    f"The target {target.display} already holds {len(keys)} key(s) and no "
                    "partial-rechunk marker, so it may be someone's data. Choose an empty "
                    f"target, or pass {option_text('overwrite', True)} to replace it."
                )
            check_overwrite(store, prefix, target.display, keys)  # Zarr keys only, or nothing
            delete_keys(store, keys)
        return set(), False, False


def prepare_temp(temp: Location, token: str) -> None:
    """Check the temp store is empty or ours; (re)start it for the run *token*."""
    store = temp.open_store()
    with storage_errors(temp.display):
        keys = list_keys(store, temp.path)
        name = f"{temp.path}/{MARKER_PREFIX}.json" if temp.path else f"{MARKER_PREFIX}.json"
        raw = read_keys(store, [name])[name]
        if keys and raw is None:
            raise InvalidOptionError(
                f"temp_store {temp.display} is not empty ({len(keys)} keys) and was not made "
                "by rechunk_array. Pass an empty location for the intermediate copy."
            )
        if raw is not None and json.loads(raw).get("token") != token:
            delete_keys(store, keys)
        write_keys(store, {name: json.dumps({"token": token}).encode()})


def remove_prefix(location: Location, prefix: str) -> None:
    """Delete every key under *prefix* of *location* (and the directory, on local disk)."""
    store = location.open_store()
    full = join_key(location.path, prefix) if prefix else location.path
    with storage_errors(location.display):
        delete_keys(store, list_keys(store, full))
        sync(store.delete_dir(full))
