"""netCDF-3 files on an object store, read with scipy through fsspec file objects.

Neither h5netcdf nor the netCDF4 library reads netCDF-3 from a file object; xarray's ``scipy``
engine does, but scipy reads all of a file object's values when it opens it (no memory map,
no byte ranges).  :func:`open_classic` therefore opens each file with the ``scipy`` engine
once in this process for its attributes, dtypes and index coordinates (decoding stays
xarray's own), and swaps the other variables for :class:`ClassicArray`: it pickles as the
file's URL and the variable's name, so the graph carries no values, and the process that
reads a region opens the file once (whole, :func:`_classic_file`) and keeps the last
``_CLASSIC_KEEP`` files for the next regions.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from zarr_dask_utils._core.storage.locations import redact
from zarr_dask_utils.convert.errors import ConversionInputError
from zarr_dask_utils.convert.sources import SourceFile, _remote_error, open_input

__all__ = ["ClassicArray", "open_classic"]


class ClassicArray(BackendArray):
    """A variable of a netCDF-3 file on an object store, read on whichever process indexes it.

    Pickles as its :class:`SourceFile` and variable name (a few hundred bytes in the graph):
    scipy reads a file object's values whole when it opens it, so each process opens the file
    once (:func:`_classic_file`) and indexes it in memory.
    """

    def __init__(self, source: SourceFile, name: str, shape: tuple[int, ...], dtype: Any):
        self.source, self.name, self.shape, self.dtype = source, name, shape, np.dtype(dtype)

    def __getitem__(self, key: Any) -> Any:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER_1VECTOR, self._getitem
        )

    def _getitem(self, key: tuple[Any, ...]) -> Any:
        data = _classic_file(self.source).variables[self.name].data
        adapter = indexing.NumpyIndexingAdapter(data)  # type: ignore[no-untyped-call]
        values = adapter.oindex[indexing.OuterIndexer(key)]
        return np.array(values, dtype=self.dtype)  # native byte order, as xarray's scipy


_CLASSIC_KEEP = 2  # netCDF-3 files a process keeps open (in memory) for the next region
_classic_open: dict[tuple[str, int, str], Any] = {}
_classic_loading: dict[tuple[str, int, str], threading.Lock] = {}  # one download per file
_classic_lock = threading.Lock()  # guards the two dicts only, never held while downloading


def _classic_file(source: SourceFile) -> Any:
    """*source* opened by scipy in this process (its values read whole), kept for reuse.

    Threads asking for the same file wait for its one download; a file already kept, or
    another file, does not wait for it.
    """
    from dask.base import tokenize

    key = (source.path, source.nbytes, tokenize(dict(source.storage_options or {})))
    with _classic_lock:
        opened = _classic_open.get(key)
        if opened is not None:
            return opened
        loading = _classic_loading.setdefault(key, threading.Lock())
    with loading:
        with _classic_lock:
            opened = _classic_open.get(key)
        if opened is not None:  # another thread downloaded it meanwhile
            return opened
        import scipy.io

        try:
            with open_input(source) as fobj:
                try:
                    opened = scipy.io.netcdf_file(fobj, "r", mmap=False)
                except Exception as err:
                    raise _remote_error(err, source.path) from err
            with _classic_lock:
                while len(_classic_open) >= _CLASSIC_KEEP:
                    _classic_open.pop(next(iter(_classic_open)))
                _classic_open[key] = opened
        finally:
            with _classic_lock:
                _classic_loading.pop(key, None)
        return opened


def open_classic(source: SourceFile, *, decode_cf: bool = True, **kwargs: Any) -> Any:
    """A netCDF-3 file on an object store as xarray's ``scipy`` engine opens it, lazily read.

    Attributes, dtypes and index coordinates are scipy's, read raw; the other variables are
    :class:`ClassicArray`, so the Dask graph holds no values.  *decode_cf* decodes the result
    with ``xarray.decode_cf`` (as ``open_dataset`` would); *kwargs* go to ``open_dataset``.
    """
    with open_input(source) as fobj:
        if fobj.read(4) == b"CDF\x05":
            raise ConversionInputError(
                f"{redact(source.path)} is a CDF-5 (64-bit data) netCDF-3 file on an object "
                "store: scipy, the only reader of netCDF-3 file objects, reads classic and "
                "64-bit offset files only. Copy it to a local directory (e.g. `aws s3 cp`, or "
                "fsspec's get) and convert it from there."
            )
        fobj.seek(0)
        with xr.open_dataset(fobj, engine="scipy", decode_cf=False, **kwargs) as ds:

            def lazy(name: Any) -> Any:
                var = ds.variables[name]
                if name in ds.indexes:
                    return var.load()
                array = ClassicArray(source, str(name), var.shape, var.dtype)
                return xr.Variable(
                    var.dims, indexing.LazilyIndexedArray(array), var.attrs, var.encoding
                )

            out = xr.Dataset(
                {n: lazy(n) for n in ds.data_vars}, {n: lazy(n) for n in ds.coords}, ds.attrs
            )
            out.encoding = dict(ds.encoding)
    return xr.decode_cf(out) if decode_cf else out
