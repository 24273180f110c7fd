"""Inject real damage into real stores, through zarr's Store API.

Every function takes the store first (a path, a URL with ``storage_options``, a zarr Store or
Group: anything :func:`zarr_dask_utils.open_store` takes), then the key or node path relative
to it, and changes the stored bytes the way a crashed writer, a bad copy or an old tool would.
Nothing is simulated: the damaged store is what zarr, and the checks under test, then read.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.storage import MemoryStore

from zarr_dask_utils._core.pure.keys import (
    ARRAY_V2,
    ATTRS_V2,
    CONSOLIDATED_V2,
    GROUP_V2,
    ZARR_JSON,
    join_key,
    parse_document,
    split_key,
)
from zarr_dask_utils._core.storage.locations import StoreLike
from zarr_dask_utils._core.storage.storeio import delete_keys, read_keys, write_keys
from zarr_dask_utils.testing.builders import writable_store

__all__ = [
    "add_array_unconsolidated",
    "break_json",
    "delete_key",
    "edit_document",
    "mixed_format_node",
    "remove_group_document",
    "unsort_consolidated",
    "write_bytes",
    "write_out_of_grid_chunk",
    "zarr_drops",
]

_EMPTY_CONSOLIDATED = {"kind": "inline", "must_understand": False, "metadata": {}}


def _dump(doc: Any) -> bytes:
    return json.dumps(doc, indent=2, allow_nan=True).encode()


def _read(zstore: Store, key: str) -> bytes:
    value = read_keys(zstore, [key])[key]
    if value is None:
        raise FileNotFoundError(f"No key {key!r} in the store {zstore!r}.")
    return value


def _read_json(zstore: Store, key: str) -> Any:
    return json.loads(_read(zstore, key))


def _node_documents(zstore: Store, path: str) -> dict[str, Any]:
    """The parsable documents (``zarr.json``, ``.zarray``, ``.zgroup``, ``.zattrs``) at *path*."""
    names = (ZARR_JSON, ARRAY_V2, GROUP_V2, ATTRS_V2)
    raw = read_keys(zstore, [join_key(path, n) for n in names])
    docs = {}
    for name in names:
        value, _ = parse_document(raw[join_key(path, name)])
        if isinstance(value, dict):
            docs[name] = value
    return docs


def break_json(
    store: StoreLike, key: str, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Truncate the JSON document at *key* to half its bytes (a writer that died mid-write).

    Parameters
    ----------
    store
        A path, URL, zarr Store or Group (keys are relative to it).
    key
        The key, e.g. ``"t2m/zarr.json"`` or ``"t2m/.zarray"``.
    storage_options
        fsspec options for URLs.

    Raises
    ------
    FileNotFoundError
        The key does not exist.
    """
    zstore, prefix = writable_store(store, storage_options)
    full = join_key(prefix, key)
    data = _read(zstore, full)
    broken = data[: max(1, len(data.rstrip()) // 2)]
    write_keys(zstore, {full: broken})


def delete_key(
    store: StoreLike, key: str, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Delete the object at *key* (it must exist).

    Parameters
    ----------
    store
        A path, URL, zarr Store or Group (keys are relative to it).
    key
        The key, e.g. ``"t2m/zarr.json"`` or ``"t2m/.zarray"``.
    storage_options
        fsspec options for URLs.

    Raises
    ------
    FileNotFoundError
        The key does not exist (a typo in a test should not pass silently).
    """
    zstore, prefix = writable_store(store, storage_options)
    full = join_key(prefix, key)
    _read(zstore, full)
    delete_keys(zstore, [full])


def write_bytes(
    store: StoreLike,
    key: str,
    data: bytes,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write *data* at *key*, replacing what is there (a junk key, a zero-byte chunk, …).

    Parameters
    ----------
    store
        A path, URL, zarr Store or Group (keys are relative to it).
    key
        The key, e.g. ``"t2m/zarr.json"`` or ``"t2m/.zarray"``.
    data
        The bytes to store.
    storage_options
        fsspec options for URLs.
    """
    zstore, prefix = writable_store(store, storage_options)
    write_keys(zstore, {join_key(prefix, key): bytes(data)})


def edit_document(
    store: StoreLike,
    key: str,
    *,
    set: Mapping[str, Any] | None = None,
    remove: Iterable[str] = (),
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Change top-level fields of the JSON document at *key*.

    Parameters
    ----------
    store
        The store.
    key
        Key of a JSON object (``zarr.json``, ``.zarray``, …).
    set
        Fields to set (replacing whole values).
    remove
        Fields to delete (missing ones are ignored).
    storage_options
        fsspec options for URLs.

    Returns
    -------
    dict
        The document as written.
    """
    zstore, prefix = writable_store(store, storage_options)
    full = join_key(prefix, key)
    doc = _read_json(zstore, full)
    if not isinstance(doc, dict):
        raise ValueError(f"The document at {key!r} is not a JSON object.")
    doc.update(set or {})
    for name in remove:
        doc.pop(name, None)
    write_keys(zstore, {full: _dump(doc)})
    return doc


def add_array_unconsolidated(
    store: StoreLike,
    path: str,
    *,
    shape: Sequence[int] = (4,),
    chunks: Sequence[int] | None = None,
    dtype: str = "float32",
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Create an array after consolidation, so the consolidated metadata becomes stale.

    The parent group is opened from its real documents (``use_consolidated=False``) and the
    array created with zarr; its data is ``np.arange``.  zarr-python 3.1.6 never updates
    consolidated metadata when it creates a node (not even through a group opened with
    consolidated metadata), so afterwards ``zarr.open_group`` hides the new array while
    ``use_consolidated=False`` shows it.

    Returns
    -------
    str
        The path of the new array.
    """
    zstore, prefix = writable_store(store, storage_options)
    parent, name = split_key(path.strip("/"))
    group = zarr.open_group(
        zstore, path=join_key(prefix, parent), mode="r+", use_consolidated=False
    )
    array = group.create_array(name, shape=tuple(shape), chunks=tuple(chunks or shape), dtype=dtype)
    array[...] = np.arange(int(np.prod(shape))).astype(dtype).reshape(tuple(shape))
    return path.strip("/")


def remove_group_document(
    store: StoreLike, path: str, *, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Delete the document(s) of the group at *path*: ``zarr.json``, or ``.zgroup`` + ``.zattrs``.

    The arrays and groups below it stay; zarr reading the real documents can no longer reach
    them.  ``""`` is the root group.

    Returns
    -------
    list of str
        The deleted keys (relative to the store).

    Raises
    ------
    ValueError
        No group document is at *path* (nothing there, or an array).
    """
    zstore, prefix = writable_store(store, storage_options)
    node = join_key(prefix, path.strip("/")).strip("/")
    docs = _node_documents(zstore, node)
    v3 = docs.get(ZARR_JSON)
    if isinstance(v3, dict) and v3.get("node_type") == "group":
        keys = [ZARR_JSON]
    elif GROUP_V2 in docs:
        keys = [n for n in (GROUP_V2, ATTRS_V2) if n in docs]
    else:
        raise ValueError(f"No group document at {path!r} (found {sorted(docs) or 'nothing'}).")
    full = [join_key(node, k) for k in keys]
    delete_keys(zstore, full)
    return [join_key(path.strip("/"), k) for k in keys]


# --- consolidated metadata in an order zarr-python 3.1 misreads ------------------------------


def _consolidated(zstore: Store, prefix: str) -> tuple[int, str, dict[str, Any], dict[str, Any]]:
    """Return ``(format, key, whole document, entries)`` of the consolidated metadata."""
    raw = read_keys(zstore, [join_key(prefix, ZARR_JSON), join_key(prefix, CONSOLIDATED_V2)])
    v3 = raw[join_key(prefix, ZARR_JSON)]
    if v3 is not None:
        doc = json.loads(v3)
        meta = doc.get("consolidated_metadata") or {}
        if isinstance(meta.get("metadata"), dict):
            return 3, join_key(prefix, ZARR_JSON), doc, meta["metadata"]
    v2 = raw[join_key(prefix, CONSOLIDATED_V2)]
    if v2 is not None:
        doc = json.loads(v2)
        return 2, join_key(prefix, CONSOLIDATED_V2), doc, doc["metadata"]
    raise ValueError("The store has no consolidated metadata to reorder.")


def _entry_node(key: str, zarr_format: int) -> str:
    return split_key(key)[0] if zarr_format == 2 else key


def zarr_drops(keys: Sequence[str], zarr_format: int) -> list[str]:
    """Parents whose children zarr-python 3.1 loses when it reads consolidated *keys* in order.

    A replay of ``ConsolidatedMetadata._flat_to_nested``: nodes are stably sorted by depth,
    then grouped with ``itertools.groupby`` on ``key.rsplit("/", 1)[0]``; a later run of the
    same parent replaces the earlier one, whose children are lost.
    """
    nodes = [n for n in dict.fromkeys(_entry_node(k, zarr_format) for k in keys) if n]
    nodes.sort(key=lambda k: k.count("/"))
    seen: dict[str, list[str]] = {}
    dropped: list[str] = []
    for parent, run in itertools.groupby(nodes, key=lambda k: k.rsplit("/", 1)[0]):
        children = [k for k in run if k != parent]
        if parent in seen and seen[parent] and parent not in dropped:
            dropped.append(parent)
        seen[parent] = children
    return dropped


def _interleaved(keys: Sequence[str], zarr_format: int) -> list[str]:
    """Order *keys* by depth, alternating between parents so siblings are not contiguous."""
    by_node: dict[str, list[str]] = {}
    for key in keys:
        by_node.setdefault(_entry_node(key, zarr_format), []).append(key)
    depth_of = {n: (n.count("/") + 1 if n else 0) for n in by_node}
    ordered: list[str] = []
    for depth in sorted(set(depth_of.values())):
        parents: dict[str, list[str]] = {}
        for node in sorted(n for n in by_node if depth_of[n] == depth):
            parents.setdefault(node.rpartition("/")[0], []).append(node)
        runs = list(parents.values())
        for i in range(max(map(len, runs))):
            for run in runs:
                if i < len(run):
                    ordered.extend(by_node[run[i]])
    return ordered


def _unused(existing: set[str], wanted: str) -> str:
    name, n = wanted, 1
    while name in existing:
        n += 1
        name = f"{wanted}{n}"
    return name


def _add_helper_nodes(
    zstore: Store, prefix: str, zarr_format: int, entries: dict[str, Any]
) -> list[str]:
    """Create a group (with one array) beside a group that has 2+ children; return new nodes.

    Without two parents at one depth no order can make zarr drop anything; the new nodes are
    real (documents written by zarr) and added to *entries* as zarr would consolidate them.
    """
    nodes = {_entry_node(k, zarr_format) for k in entries} - {""}
    counts: dict[str, int] = {}
    for node in nodes:
        if "/" in node:
            parent = node.rpartition("/")[0]
            counts[parent] = counts.get(parent, 0) + 1
    root = zarr.open_group(zstore, path=prefix, mode="r+", use_consolidated=False)
    created: list[str] = []
    busy = sorted((p for p, c in counts.items() if c >= 2), key=lambda p: (p.count("/"), p))
    if busy:
        anchor = busy[0]
    else:
        anchor = _unused(nodes, "aux")
        group = root.create_group(anchor)
        for name in ("flag_a", "flag_b"):
            group.create_array(name, shape=(2,), dtype="int8")
        created += [anchor, f"{anchor}/flag_a", f"{anchor}/flag_b"]
    parent, _, base = anchor.rpartition("/")
    sibling = join_key(parent, _unused({n.rpartition("/")[2] for n in nodes}, f"{base}_aux"))
    root.create_group(sibling).create_array("flag", shape=(2,), dtype="int8")
    created += [sibling, f"{sibling}/flag"]
    for node in created:
        docs = _node_documents(zstore, join_key(prefix, node))
        if zarr_format == 3:
            doc = docs[ZARR_JSON]
            if doc.get("node_type") == "group":
                doc["consolidated_metadata"] = dict(_EMPTY_CONSOLIDATED)
            entries[node] = doc
        else:
            for name in (GROUP_V2, ARRAY_V2, ATTRS_V2):
                if name in docs:
                    entries[f"{node}/{name}"] = docs[name]
    return created


def unsort_consolidated(
    store: StoreLike, *, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Rewrite the consolidated metadata in an order that makes zarr-python 3.1 lose children.

    The entries (``.zmetadata`` in format 2, ``consolidated_metadata`` in the root
    ``zarr.json`` in format 3) keep their content but are ordered by depth with the children
    of different parents alternating.  zarr-python 3.1.6 groups them with ``itertools.groupby``
    (zarr-python #4226): a group opened through the consolidated metadata then lists only some
    of its children, and listing the root raises ``KeyError``.  When no order can do that
    (no depth with two parents), a sibling group ``<name>_aux`` with an array ``flag`` is
    created next to a group with two or more children (and ``aux`` with two arrays first if
    there is none), and consolidated together with the rest: current, but unsorted.

    Returns
    -------
    list of str
        The groups whose children zarr will drop (node paths).
    """
    zstore, prefix = writable_store(store, storage_options)
    zarr_format, key, doc, entries = _consolidated(zstore, prefix)
    order = _interleaved(list(entries), zarr_format)
    if not zarr_drops(order, zarr_format):
        _add_helper_nodes(zstore, prefix, zarr_format, entries)
        order = _interleaved(list(entries), zarr_format)
    dropped = zarr_drops(order, zarr_format)
    if not dropped:  # pragma: no cover - the helper nodes always make two parents
        raise RuntimeError("Could not find an order of the consolidated metadata zarr misreads.")
    reordered = {k: entries[k] for k in order}
    if zarr_format == 3:
        doc["consolidated_metadata"]["metadata"] = reordered
    else:
        doc["metadata"] = reordered
    write_keys(zstore, {key: _dump(doc)})
    return dropped


# --- chunks and formats --------------------------------------------------------------------------


def _chunk_key(indices: Sequence[int], doc: Mapping[str, Any], zarr_format: int) -> str:
    if zarr_format == 2:
        return str(doc.get("dimension_separator") or ".").join(map(str, indices)) or "0"
    encoding = doc.get("chunk_key_encoding") or {"name": "default"}
    name = encoding.get("name", "default")
    separator = str(
        (encoding.get("configuration") or {}).get("separator", "/" if name == "default" else ".")
    )
    if name == "v2":
        return separator.join(map(str, indices)) or "0"
    return separator.join(["c", *map(str, indices)])


def write_out_of_grid_chunk(
    store: StoreLike, array_path: str, *, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Write a chunk one step beyond the array's chunk grid along the first dimension.

    The key follows the array's own encoding (format 2 ``dimension_separator`` ``.``/``/``;
    format 3 ``default`` ``c/…`` or ``v2`` keys, with their separators); the bytes are a copy
    of chunk 0 when it exists.

    Returns
    -------
    str
        The key written (relative to the store).

    Raises
    ------
    ValueError
        The array has no dimensions (its grid is a single chunk, nothing lies beyond).
    """
    zstore, prefix = writable_store(store, storage_options)
    node = array_path.strip("/")
    docs = _node_documents(zstore, join_key(prefix, node))
    v3 = docs.get(ZARR_JSON)
    if isinstance(v3, dict) and v3.get("node_type") == "array":
        zarr_format, doc = 3, v3
        chunks = doc["chunk_grid"]["configuration"]["chunk_shape"]
    elif ARRAY_V2 in docs:
        zarr_format, doc = 2, docs[ARRAY_V2]
        chunks = doc["chunks"]
    else:
        raise ValueError(f"No array document at {array_path!r}.")
    shape = doc["shape"]
    if not shape:
        raise ValueError(f"The array {array_path!r} has no dimensions: no chunk is out of grid.")
    beyond = [math.ceil(shape[0] / chunks[0]), *([0] * (len(shape) - 1))]
    first = read_keys(
        zstore, [join_key(join_key(prefix, node), _chunk_key([0] * len(shape), doc, zarr_format))]
    )
    data = next(iter(first.values())) or b"\x00" * 16
    key = join_key(node, _chunk_key(beyond, doc, zarr_format))
    write_keys(zstore, {join_key(prefix, key): data})
    return key


def mixed_format_node(
    store: StoreLike, path: str, *, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Add a document of the other format beside the node at *path* (as zarr would write it).

    A format 3 array gets a ``.zarray`` (same shape, chunks and dtype), a format 3 group a
    ``.zgroup``; a format 2 node gets the matching ``zarr.json``.

    Returns
    -------
    str
        The key written (relative to the store).
    """
    zstore, prefix = writable_store(store, storage_options)
    node = path.strip("/")
    docs = _node_documents(zstore, join_key(prefix, node))
    memory = MemoryStore()
    other: Literal[2, 3]
    v3 = docs.get(ZARR_JSON)
    if isinstance(v3, dict):
        other, name = 2, (ARRAY_V2 if v3.get("node_type") == "array" else GROUP_V2)
        if name == ARRAY_V2:
            shape = v3["shape"]
            chunks = v3["chunk_grid"]["configuration"]["chunk_shape"]
            dtype = v3["data_type"]
    elif ARRAY_V2 in docs or GROUP_V2 in docs:
        other, name = 3, ZARR_JSON
        if ARRAY_V2 in docs:
            shape, chunks, dtype = (docs[ARRAY_V2][f] for f in ("shape", "chunks", "dtype"))
    else:
        raise ValueError(f"No Zarr node at {path!r}.")
    is_array = ARRAY_V2 in docs or (isinstance(v3, dict) and v3.get("node_type") == "array")
    if is_array:
        zarr.create_array(
            memory, shape=shape, chunks=chunks, dtype=np.dtype(dtype), zarr_format=other
        )
    else:
        zarr.open_group(memory, mode="w", zarr_format=other)
    document = read_keys(memory, [name])[name]
    if document is None:  # pragma: no cover - zarr always writes it
        raise RuntimeError(f"zarr wrote no {name} for a format {other} node.")
    key = join_key(node, name)
    write_keys(zstore, {join_key(prefix, key): document})
    return key
