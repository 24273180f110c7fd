"""Hostile inputs for tests: documents that crash parsers, links that loop, nodes zarr rejects.

Like :mod:`~zarr_dask_utils.testing.corrupt` (which is already long, hence a module of its
own), every function changes real stored bytes or real file-system entries; nothing is
simulated.  Document functions take any store :func:`zarr_dask_utils.open_store` takes (local
path, URL with ``storage_options``, zarr Store or Group); link functions need a local folder.

Examples
--------
>>> import zarr
>>> from zarr_dask_utils.testing import build_sample_hierarchy, hostile
>>> store = zarr.storage.MemoryStore()
>>> build_sample_hierarchy(store)
>>> hostile.nest_brackets(store, "time/zarr.json", nbytes=5_000)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zarr_dask_utils._core.storage.locations import StoreLike
from zarr_dask_utils.testing.corrupt import write_bytes

__all__ = ["empty_document", "link_loop", "nest_brackets", "self_loop"]


def nest_brackets(
    store: StoreLike,
    key: str,
    *,
    nbytes: int = 100_000,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Replace the document at *key* with *nbytes* opening brackets (``[[[[…``).

    Python's ``json.loads`` gives up on it with ``RecursionError`` (not ``JSONDecodeError``)
    after ~1000 levels, whatever *nbytes* is: the shape of a hostile or runaway writer.

    Parameters
    ----------
    store
        A path, URL, zarr Store or Group (keys are relative to it).
    key
        The document's key, e.g. ``"t2m/zarr.json"`` or ``"t2m/.zarray"``.
    nbytes
        Size of the document (50 MiB: ``50 * 2**20``).
    storage_options
        fsspec options for URLs.
    """
    write_bytes(store, key, b"[" * nbytes, storage_options=storage_options)


def empty_document(
    store: StoreLike, key: str, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Replace the document at *key* with 0 bytes (a writer that died before writing).

    Parameters
    ----------
    store
        A path, URL, zarr Store or Group (keys are relative to it).
    key
        The document's key, e.g. ``"zarr.json"`` for the root.
    storage_options
        fsspec options for URLs.
    """
    write_bytes(store, key, b"", storage_options=storage_options)


def link_loop(folder: str | os.PathLike[str], name: str = "loop") -> tuple[Path, Path]:
    """Create two symbolic links in *folder* that point at each other (``name`` ↔ ``name.2``).

    Opening either fails with ``OSError: [Errno 40] Too many levels of symbolic links``.

    Parameters
    ----------
    folder
        An existing local folder (e.g. inside a store).
    name
        Name of the first link.

    Returns
    -------
    tuple of pathlib.Path
        The two links.
    """
    first, second = Path(folder, name), Path(folder, f"{name}.2")
    first.symlink_to(second.name)
    second.symlink_to(first.name)
    return first, second


def self_loop(path: str | os.PathLike[str]) -> Path:
    """Make *path* a symbolic link to itself (a store path that can never be resolved).

    ``Path.resolve()`` raises ``RuntimeError`` on it (``OSError`` from Python 3.13).

    Parameters
    ----------
    path
        Where the link goes; it must not exist.

    Returns
    -------
    pathlib.Path
        The link.
    """
    link = Path(path)
    link.symlink_to(link.name)
    return link
