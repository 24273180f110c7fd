"""Build small, deterministic Zarr hierarchies for tests, benchmarks and demos.

Every builder takes what :func:`zarr_dask_utils.open_store` takes (a path, a URL with
``storage_options``, a zarr Store or Group) and writes through zarr's own Store API, so the
same builder fills a temporary directory, a ``MemoryStore`` or an S3 bucket.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.storage import MemoryStore

from zarr_dask_utils._core.pure.keys import is_metadata_key, join_key
from zarr_dask_utils._core.storage.locations import StoreLike, resolve_location
from zarr_dask_utils._core.storage.storeio import list_keys, read_keys, write_keys

__all__ = [
    "SAMPLE_ARRAYS",
    "SAMPLE_GROUPS",
    "build_demo_store",
    "build_sample_hierarchy",
    "build_wide_hierarchy",
]

#: Array path → (shape, chunks, dtype, dimension names) of :func:`build_sample_hierarchy`.
SAMPLE_ARRAYS: Mapping[str, tuple[tuple[int, ...], tuple[int, ...], str, tuple[str, ...]]] = {
    "climate/t2m": ((8, 16, 16), (4, 8, 8), "float32", ("time", "lat", "lon")),
    "climate/precip": ((8, 16, 16), (8, 8, 8), "float64", ("time", "lat", "lon")),
    "climate/static/elevation": ((16, 16), (8, 8), "int16", ("lat", "lon")),
    "time": ((8,), (8,), "int64", ("time",)),
}
#: Group path → attributes of :func:`build_sample_hierarchy` (``""`` is the root).
SAMPLE_GROUPS: Mapping[str, Mapping[str, Any]] = {
    "": {"title": "sample"},
    "climate": {"description": "surface climate variables"},
    "climate/static": {"description": "fields that do not change in time"},
}
_ARRAY_ATTRS: Mapping[str, Mapping[str, Any]] = {
    "climate/t2m": {"units": "K", "long_name": "2 metre temperature"},
    "climate/precip": {"units": "m", "long_name": "total precipitation"},
    "climate/static/elevation": {"units": "m"},
    "time": {"units": "hours since 2000-01-01"},
}
_CONSOLIDATED_WARNING = "Consolidated metadata is currently not part"


def writable_store(
    store: StoreLike, storage_options: Mapping[str, Any] | None = None
) -> tuple[Store, str]:
    """Open *store* writable and return ``(zarr Store, node path inside it)``.

    Parameters
    ----------
    store
        A path, URL, zarr Store, Group or Array, or an fsspec mapper.
    storage_options
        fsspec options for URLs.

    Returns
    -------
    tuple
        The writable zarr Store and the node path (``""`` unless a Group/Array was given).
    """
    location = resolve_location(store, storage_options=storage_options, read_only=False)
    return location.open_store(), location.path


def _sample_data(path: str) -> np.ndarray[Any, Any]:
    shape, _, dtype, _ = SAMPLE_ARRAYS[path]
    n = int(np.prod(shape))
    data: np.ndarray[Any, Any]
    if path == "climate/t2m":
        data = 250.0 + (np.arange(n) % 60) * 0.5
    elif path == "climate/precip":
        data = (np.arange(n) % 17) / 1000.0
    elif path == "climate/static/elevation":
        data = np.arange(n) * 10 - 500
    else:
        data = np.arange(n) * 3
    return np.asarray(data, dtype=dtype).reshape(shape)


def consolidate(store: Store, *, path: str = "", zarr_format: int | None = None) -> None:
    """Consolidate with ``zarr.consolidate_metadata``, without its format-3 spec warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _CONSOLIDATED_WARNING, UserWarning)
        zarr.consolidate_metadata(store, path=path or None, zarr_format=zarr_format)  # type: ignore[arg-type]


def build_sample_hierarchy(
    store: StoreLike,
    *,
    zarr_format: int = 3,
    storage_options: Mapping[str, Any] | None = None,
    consolidated: bool = True,
) -> None:
    """Write the sample hierarchy (3 groups, 4 arrays) with deterministic data.

    The hierarchy (see :data:`SAMPLE_ARRAYS` and :data:`SAMPLE_GROUPS`)::

        /                          group  attrs {"title": "sample"}
        /climate                   group
        /climate/t2m               float32 (8, 16, 16) chunks (4, 8, 8)
        /climate/precip            float64 (8, 16, 16) chunks (8, 8, 8)
        /climate/static            group
        /climate/static/elevation  int16   (16, 16)    chunks (8, 8)
        /time                      int64   (8,)        chunks (8,)

    Arrays carry dimension names (``dimension_names`` in format 3, the ``_ARRAY_DIMENSIONS``
    attribute in format 2) and a ``units`` attribute; every chunk is written.

    Parameters
    ----------
    store
        Where to write: a path, URL, zarr Store or Group.  Anything already there is replaced.
    zarr_format
        2 or 3.
    storage_options
        fsspec options for URLs (credentials, ``endpoint_url``).
    consolidated
        Consolidate the metadata with ``zarr.consolidate_metadata`` afterwards.

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils.testing.builders import build_sample_hierarchy
    >>> store = zarr.storage.MemoryStore()
    >>> build_sample_hierarchy(store)
    >>> zarr.open_group(store, mode="r")["climate/t2m"].shape
    (8, 16, 16)
    """
    zstore, path = writable_store(store, storage_options)
    root = zarr.open_group(
        zstore,
        path=path,
        mode="w",
        zarr_format=zarr_format,  # type: ignore[arg-type]
        attributes=dict(SAMPLE_GROUPS[""]),
    )
    for group_path, attrs in SAMPLE_GROUPS.items():
        if group_path:
            root.create_group(group_path, attributes=dict(attrs))
    for array_path, (shape, chunks, dtype, dims) in SAMPLE_ARRAYS.items():
        attrs = dict(_ARRAY_ATTRS[array_path])
        extra: dict[str, Any] = {"dimension_names": list(dims)}
        if zarr_format == 2:
            attrs["_ARRAY_DIMENSIONS"] = list(dims)
            extra = {}
        array = root.create_array(
            array_path, shape=shape, chunks=chunks, dtype=dtype, attributes=attrs, **extra
        )
        array[...] = _sample_data(array_path)
    if consolidated:
        consolidate(zstore, path=path, zarr_format=zarr_format)


def _template_documents(
    zarr_format: int, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str
) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, bytes]]:
    """Documents zarr itself writes for a root, a group ``g`` and an array ``g/a``."""
    memory = MemoryStore()
    root = zarr.open_group(memory, mode="w", zarr_format=zarr_format)  # type: ignore[arg-type]
    array = root.create_group("g").create_array("a", shape=shape, chunks=chunks, dtype=dtype)
    first = tuple(slice(0, c) for c in chunks)
    array[first] = np.arange(int(np.prod(chunks))).astype(dtype).reshape(chunks)
    keys = list_keys(memory)
    raw = {k: v for k, v in read_keys(memory, keys).items() if v is not None}
    root_docs = {k: v for k, v in raw.items() if "/" not in k}
    array_docs = {k[len("g/a/") :]: v for k, v in raw.items() if k.startswith("g/a/")}
    group_docs = {
        k[len("g/") :]: v for k, v in raw.items() if k.startswith("g/") and "/" not in k[2:]
    }
    return root_docs, group_docs, array_docs


def build_wide_hierarchy(
    store: StoreLike,
    *,
    n_arrays: int,
    zarr_format: int = 3,
    storage_options: Mapping[str, Any] | None = None,
    groups: int = 10,
    shape: Sequence[int] = (1000, 100),
    chunks: Sequence[int] = (100, 100),
    dtype: str = "float32",
    write_chunks: bool = True,
) -> list[str]:
    """Write a root group with *groups* groups holding *n_arrays* small arrays, fast.

    zarr writes one root group, one group ``g`` and one array ``g/a`` into a ``MemoryStore``
    once; those bytes are the templates.  Every group and array document (and the first chunk
    of every array) is then written with concurrent requests, so ~1000 arrays on S3 take
    seconds, and each document is byte for byte what zarr-python itself writes.  Arrays are
    ``group{g:03d}/var{i:05d}`` with array ``i`` in group ``i % groups``.  The metadata is
    not consolidated, and nothing already in the location is removed first.

    Parameters
    ----------
    store
        Where to write: a path, URL, zarr Store or Group.
    n_arrays
        Number of arrays.
    zarr_format
        2 or 3.
    storage_options
        fsspec options for URLs.
    groups
        Number of groups below the root (at least 1).
    shape, chunks, dtype
        Of every array.
    write_chunks
        Also write the first chunk of every array (the others stay unwritten: fill value).

    Returns
    -------
    list of str
        The array paths, in creation order.

    Examples
    --------
    >>> import zarr
    >>> from zarr_dask_utils.testing.builders import build_wide_hierarchy
    >>> store = zarr.storage.MemoryStore()
    >>> build_wide_hierarchy(store, n_arrays=3, groups=2)
    ['group000/var00000', 'group001/var00001', 'group000/var00002']
    """
    if groups < 1 or n_arrays < 0:
        raise ValueError(f"Need groups >= 1 and n_arrays >= 0, got {groups=} and {n_arrays=}.")
    zstore, prefix = writable_store(store, storage_options)
    root_docs, group_docs, array_docs = _template_documents(
        zarr_format, tuple(shape), tuple(chunks), dtype
    )
    if not write_chunks:
        array_docs = {k: v for k, v in array_docs.items() if is_metadata_key(k)}
    items: dict[str, bytes] = {join_key(prefix, k): v for k, v in root_docs.items()}
    group_names = [f"group{g:03d}" for g in range(groups)]
    for name in group_names:
        items.update({join_key(prefix, f"{name}/{k}"): v for k, v in group_docs.items()})
    paths = [f"{group_names[i % groups]}/var{i:05d}" for i in range(n_arrays)]
    for path in paths:
        items.update({join_key(prefix, f"{path}/{k}"): v for k, v in array_docs.items()})
    write_keys(zstore, items)
    return paths


def build_demo_store(path: str | os.PathLike[str], *, zarr_format: int = 3) -> str:
    """Build the sample hierarchy with the problems real pipelines leave behind.

    * consolidated metadata that is stale: ``climate/wind`` was added after consolidation, so
      ``zarr.open_group`` (which trusts the consolidated copy) does not show it;
    * the group document of ``climate/static`` is missing, so zarr reading the real documents
      cannot reach ``climate/static/elevation``.

    Parameters
    ----------
    path
        Local directory to create (replaced if it exists).
    zarr_format
        2 or 3.

    Returns
    -------
    str
        The absolute path of the store.
    """
    from zarr_dask_utils.testing.corrupt import add_array_unconsolidated, remove_group_document

    target = os.path.abspath(os.fspath(path))
    build_sample_hierarchy(target, zarr_format=zarr_format)
    add_array_unconsolidated(target, "climate/wind", shape=(8, 16, 16), chunks=(4, 8, 8))
    remove_group_document(target, "climate/static")
    return target
