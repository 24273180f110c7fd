"""Stores written by other software, and what plain zarr-python 3 makes of them (issue 12).

The committed stores under ``tests/data/foreign/<writer>/`` were written by the real writers
(zarr-python 2.18, z5py, the Rust ``zarrs`` codec pipeline, netCDF-C's NCZarr) with
``scripts/make_foreign_fixtures.py``; each writer folder's ``WRITER.json`` names the versions.
One class has no installable writer and is built here by hand, byte for byte as the writer
lays it out: the Rust ``zarrs`` tools' ``.zarray``/``.zgroup`` documents beside ``zarr.json``.

:func:`zarr3_reading` is the oracle the tests compare zdu's verdicts with: what plain
zarr-python 3 opens, and the values it reads from each array.

Examples
--------
>>> case = FOREIGN_STORES["zarr2-hierarchy"]
>>> case.verdict
'readable'
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "FOREIGN_DATA",
    "FOREIGN_STORES",
    "ForeignStore",
    "Zarr3Reading",
    "materialize",
    "snapshot",
    "write_zarrs_dual_metadata",
    "zarr3_reading",
]

#: where the committed stores live (a source checkout; not shipped in the wheel)
FOREIGN_DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "foreign"


def write_zarrs_dual_metadata(root: Path) -> Path:
    """A v3 hierarchy plus matching ``.zgroup``/``.zarray``/``.zattrs``, as the Rust zarrs writes.

    ``zarrs_reencode``/``zarrs`` with v2 compatibility documents keep both generations beside
    each other; zarr-python 3 reads the ``zarr.json`` (and warns that it ignores the rest).
    """
    import zarr

    group = zarr.open_group(root, mode="w", zarr_format=3, attributes={"title": "zarrs"})
    array = group.create_array(
        "a", shape=(10, 10), chunks=(5, 5), dtype="f4", dimension_names=("y", "x")
    )
    array[:] = np.arange(100, dtype="f4").reshape(10, 10)
    array.attrs["units"] = "K"
    v2 = {
        "zarr_format": 2,
        "shape": [10, 10],
        "chunks": [5, 5],
        "dtype": "<f4",
        "compressor": None,
        "fill_value": 0.0,
        "filters": None,
        "order": "C",
        "dimension_separator": "/",
    }
    (root / "a" / ".zarray").write_text(json.dumps(v2))
    (root / "a" / ".zattrs").write_text(json.dumps({"units": "K"}))
    (root / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (root / ".zattrs").write_text(json.dumps({"title": "zarrs"}))
    return root


@dataclass(frozen=True)
class ForeignStore:
    """One class of store written by other software, and the verdict its users need.

    Attributes
    ----------
    name
        Test id, ``<writer>-<what>``.
    source
        Path under :data:`FOREIGN_DATA` of a committed store, or ``None`` for a built one.
    verdict
        ``"readable"``: zarr-python 3 opens and reads it, zdu must say so and copy it exactly;
        ``"unreadable"``: zdu must refuse it with exit 2 and *error_kind*.
    array
        The array ``verify-chunks`` and the CLI ``rechunk`` run on ("" = the root).
    error_kind
        The ``kind`` of the error an unreadable store must raise.
    builder
        Writes the store by hand (for classes with no installable writer).
    errors
        ``(code, array path)`` of the errors a readable store must get from every command
        that checks its documents or decodes its chunks (``validate``, ``repair``,
        ``doctor``, ``check --deep``, ``verify-chunks``): data zarr-python 3 reads wrongly.
    note
        Which software wrote it, and the quirk that makes it a class of its own.
    """

    name: str
    source: str | None
    verdict: Literal["readable", "unreadable"]
    array: str = ""
    error_kind: str | None = None
    builder: Callable[[Path], Path] | None = field(default=None, repr=False)
    note: str = ""
    errors: frozenset[tuple[str, str]] = frozenset()

    @property
    def suffix(self) -> str:
        """File name ending of the store (``.zip`` stores are files, others folders)."""
        return Path(self.source).suffix if self.source else ".zarr"

    def writer(self) -> dict[str, Any]:
        """The ``WRITER.json`` of a committed store's writer (versions that wrote it)."""
        if self.source is None:
            return {"written_by": {"zarr_dask_utils.testing.foreign": "by hand"}}
        doc: dict[str, Any] = json.loads(
            (FOREIGN_DATA / Path(self.source).parts[0] / "WRITER.json").read_text()
        )
        return doc


#: netCDF-C writes shuffle with elementsize 0 (= the type's size); numcodecs reads "no shuffle"
_NCZARR_SHUFFLE = frozenset({("shuffle-elementsize-zero", "temp")})

_CASES = [
    ForeignStore(
        "zarr2-hierarchy",
        "zarr2/hierarchy.zarr",
        "readable",
        "grid/temp",
        note="zarr-python 2.18: '/' separator, NaN fill, VLenUTF8, '<U4', Delta, .zmetadata",
    ),
    ForeignStore(
        "zarr2-array",
        "zarr2/array.zarr",
        "readable",
        "",
        note="zarr-python 2.18: an array at the root, Blosc, an unwritten chunk",
    ),
    ForeignStore(
        "zarr2-zip",
        "zarr2/hierarchy.zip",
        "readable",
        "grid/temp",
        note="zarr-python 2.18 ZipStore (with the duplicate entries zarr 2 appends)",
    ),
    ForeignStore(
        "zarr2-n5",
        "zarr2/container.n5",
        "unreadable",
        error_kind="not-a-zarr-store",
        note="zarr-python 2.18 N5Store: an N5 container, not Zarr",
    ),
    ForeignStore(
        "zarr2-draft-v3",
        "zarr2/draft_v3.zarr",
        "unreadable",
        error_kind="draft-v3-store",
        note="zarr-python 2.18 zarr_version=3: the pre-1.0 draft layout (meta/root…)",
    ),
    ForeignStore(
        "z5py-zarr",
        "z5py/z5.zarr",
        "readable",
        "g/partial",
        note="z5py 3.0.2, zarr format: pretty-printed documents, unwritten chunks",
    ),
    ForeignStore(
        "z5py-n5",
        "z5py/z5.n5",
        "unreadable",
        error_kind="not-a-zarr-store",
        note="z5py 3.0.2 N5 container",
    ),
    ForeignStore(
        "zarrs-sharded",
        "zarrs/sharded.zarr",
        "readable",
        "sharded",
        note="chunks and shards encoded by the Rust zarrs codec pipeline: sharding, crc32c",
    ),
    ForeignStore(
        "zarrs-dual-metadata",
        None,
        "readable",
        "a",
        builder=write_zarrs_dual_metadata,
        note="Rust zarrs: .zarray/.zgroup beside zarr.json (built by hand)",
    ),
    ForeignStore(
        "nczarr",
        "nczarr/dataset.nczarr",
        "readable",
        "temp",
        note="netCDF-C 4.10 #mode=nczarr: _nczarr_* attributes, unlimited dim, zlib+shuffle",
        errors=_NCZARR_SHUFFLE,
    ),
    ForeignStore(
        "nczarr-zarr-mode",
        "nczarr/dataset.zarr",
        "readable",
        "temp",
        note="netCDF-C 4.10 #mode=zarr: plain v2 with _ARRAY_DIMENSIONS, zlib+shuffle",
        errors=_NCZARR_SHUFFLE,
    ),
]

#: every class of foreign store, by test id
FOREIGN_STORES: dict[str, ForeignStore] = {case.name: case for case in _CASES}


def materialize(case: ForeignStore, folder: Path) -> Path:
    """Copy (or build) *case*'s store into *folder*, so a test may write beside it."""
    target = folder / f"{case.name}{case.suffix}"
    if case.builder is not None:
        return case.builder(target)
    if case.source is None:
        raise ValueError(f"{case.name}: a ForeignStore needs a source or a builder")
    source = FOREIGN_DATA / case.source
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
    return target


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under *path* (or the file itself) with its bytes, to prove nothing changed."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@dataclass(frozen=True)
class Zarr3Reading:
    """What plain zarr-python 3 makes of a store: the open error, or each array's values."""

    error: str | None
    arrays: dict[str, Any]
    failures: dict[str, str]

    @property
    def readable(self) -> bool:
        """zarr-python 3 opened the store and read every array in it."""
        return self.error is None and not self.failures


def zarr3_reading(path: Path) -> Zarr3Reading:
    """Open *path* with plain zarr-python 3 (no consolidated metadata) and read every array.

    Parameters
    ----------
    path
        A store folder, or a ``.zip`` file.

    Returns
    -------
    Zarr3Reading
        The error of opening it, or the values of every array by path and the errors of
        those that fail to read.
    """
    import zarr

    store: Any = zarr.storage.ZipStore(path, mode="r") if path.suffix == ".zip" else str(path)
    arrays: dict[str, Any] = {}
    failures: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's own notes (v2 strings, ignored .zarray)
        try:
            node = zarr.open(store, mode="r", use_consolidated=False)
        except Exception as err:  # the oracle: whatever zarr-python 3 raises
            return Zarr3Reading(f"{type(err).__name__}: {err}", {}, {})
        members = (
            [("", node)]
            if isinstance(node, zarr.Array)
            else [(k, v) for k, v in node.members(max_depth=None) if isinstance(v, zarr.Array)]
        )
        for key, array in members:
            try:
                arrays[key] = array[...]
            except Exception as err:
                failures[key] = f"{type(err).__name__}: {err}"
    if isinstance(store, zarr.storage.ZipStore):
        store.close()
    return Zarr3Reading(None, arrays, failures)
