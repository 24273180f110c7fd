"""What ``rechunk_array(..., overwrite=True)`` may delete: Zarr keys only, never the user's files.

An existing target is replaced only when every key in it belongs to a Zarr hierarchy (or to
zarr-dask-utils' own markers and backups): a metadata document, or anything inside an array
(its chunks and shards).  A folder without a Zarr document at its root, or one holding other
files (``notes.txt`` beside the arrays, a folder of the user's own), is refused as a whole,
so nothing is deleted.  :func:`foreign_keys` is the pure rule; :func:`check_overwrite` reads
the documents it needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from zarr.abc.store import Store

from zarr_dask_utils._core.errors import InvalidOptionError
from zarr_dask_utils._core.pure.keys import join_key
from zarr_dask_utils._core.pure.naming import option_text
from zarr_dask_utils._core.storage.storeio import read_keys

__all__ = ["array_folders", "check_overwrite", "foreign_keys"]

_DOCUMENTS = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"})
_ROOT_DOCUMENTS = ("zarr.json", ".zarray", ".zgroup")
_OURS = (".zdu/", ".zdu-")
_SHOWN = 5


def array_folders(documents: Mapping[str, bytes | None]) -> set[str]:
    """Folders (``""`` = root) that hold an array, from their metadata documents.

    Parameters
    ----------
    documents
        Relative key → raw bytes of every ``zarr.json`` and ``.zarray`` in the target.
    """
    folders = set()
    for key, raw in documents.items():
        folder, _, name = key.rpartition("/")
        if name == ".zarray":
            folders.add(folder)
        elif name == "zarr.json" and raw is not None:
            try:
                if json.loads(raw).get("node_type") == "array":
                    folders.add(folder)
            except (ValueError, AttributeError):
                continue  # a broken document proves nothing: its folder stays unowned
    return folders


def foreign_keys(keys: Iterable[str], arrays: set[str]) -> list[str]:
    """The keys (relative to the target) that are not Zarr's or ours to delete.

    Examples
    --------
    >>> foreign_keys(["zarr.json", "t/zarr.json", "t/c/0", "notes.txt"], {"t"})
    ['notes.txt']
    """
    out = []
    for key in keys:
        name = key.rpartition("/")[2]
        if name in _DOCUMENTS or key.startswith(_OURS):
            continue
        if "" in arrays or any(key.startswith(f"{a}/") for a in arrays):
            continue
        out.append(key)
    return out


def check_overwrite(store: Store, prefix: str, display: str, keys: Sequence[str]) -> None:
    """Raise unless every key of the existing target may be deleted by ``overwrite=True``.

    Parameters
    ----------
    store, prefix
        The target store and its node path.
    display
        The target's redacted location, for the message.
    keys
        Every key under *prefix* (full keys, as listed).

    Raises
    ------
    InvalidOptionError
        The target is not a Zarr node, or holds files that are not Zarr's; nothing was deleted.
    """
    rel = [k[len(prefix) + 1 :] if prefix else k for k in keys]
    if not set(_ROOT_DOCUMENTS) & set(rel):
        shown = ", ".join(repr(k) for k in rel[:_SHOWN])
        raise InvalidOptionError(
            f"{option_text('overwrite', True)} only replaces a Zarr array or group, but the target "
            f"{display} holds {len(rel)} key(s) ({shown}{', …' if len(rel) > _SHOWN else ''}) "
            "and no zarr.json, .zgroup or .zarray at its root. Nothing was deleted. Choose an "
            "empty or new target, or remove those files yourself."
        )
    names = [k for k in rel if k.rpartition("/")[2] in ("zarr.json", ".zarray")]
    raw = read_keys(store, [join_key(prefix, k) for k in names])
    docs = {k: raw[join_key(prefix, k)] for k in names}
    foreign = foreign_keys(rel, array_folders(docs))
    if foreign:
        shown = ", ".join(repr(k) for k in foreign[:_SHOWN])
        raise InvalidOptionError(
            f"{option_text('overwrite', True)} would delete {len(foreign)} file(s) in the target "
            f"{display} that are not part of its Zarr hierarchy ({shown}"
            f"{', …' if len(foreign) > _SHOWN else ''}). Nothing was deleted. Move them out of "
            "the target, or choose another target."
        )
