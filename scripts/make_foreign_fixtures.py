r"""Write the foreign-writer test stores under ``tests/data/foreign/<writer>/`` (issue 12).

Each store is written by the real software that users' stores come from, not rebuilt by hand:

========  ===============================================  =====================================
writer    interpreter (a throw-away venv, never .venv)      what it writes
========  ===============================================  =====================================
zarr2     ``pip install "zarr>=2.18,<2.19" "numcodecs<0.16"``  groups, ``/`` separator, NaN fill,
                                                            VLenUTF8 strings, ``.zmetadata``,
                                                            filters, a ZipStore, an N5Store, a
                                                            pre-1.0 draft-v3 store
z5py      ``pip install z5py``                              zarr v2 layout and an N5 container
zarrs     ``pip install zarrs "zarr==3.1.6"``               v3 arrays whose chunks and shards
                                                            were encoded by the Rust ``zarrs``
                                                            codec pipeline
nczarr    the project's ``.venv`` (``netCDF4`` wheel with   NCZarr (``#mode=nczarr``) and pure
          netCDF-C's NCZarr built in)                       zarr (``#mode=zarr``) datasets
========  ===============================================  =====================================

Each writer's folder gets a ``WRITER.json`` naming the versions that wrote it.  Run, from the
repository root::

    python3 -m venv /tmp/fv2 && /tmp/fv2/bin/pip install "zarr>=2.18,<2.19" "numcodecs<0.16"
    python3 -m venv /tmp/fz5 && /tmp/fz5/bin/pip install z5py
    python3 -m venv /tmp/fzs && /tmp/fzs/bin/pip install zarrs "zarr==3.1.6"
    .venv/bin/python scripts/make_foreign_fixtures.py \
        --python zarr2=/tmp/fv2/bin/python --python z5py=/tmp/fz5/bin/python \
        --python zarrs=/tmp/fzs/bin/python --python nczarr=.venv/bin/python

Without ``--python`` for a writer that writer is skipped.  The script imports nothing from
the project (it runs in the throw-away venvs) and deletes only the stores it is about to
write again.  Last run: zarr 2.18.7 + numcodecs 0.15.2, z5py 3.0.2, zarrs 0.2.3 + zarr 3.1.6,
netCDF4 1.7.5 (netCDF-C 4.10.1), all on Python 3.11.7.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "foreign"


def _fresh(path: Path) -> Path:
    """Remove a store this script wrote before (a folder or a file), return its path."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _record(folder: Path, packages: dict[str, str], stores: dict[str, str]) -> None:
    doc = {
        "written_by": packages,
        "python": platform.python_version(),
        "script": "scripts/make_foreign_fixtures.py",
        "stores": stores,
    }
    (folder / "WRITER.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


# --- zarr-python 2 ---------------------------------------------------------------------------


def write_zarr2(folder: Path) -> None:
    """Stores as zarr-python 2.18 writes them (run with zarr 2 installed)."""
    os.environ["ZARR_V3_EXPERIMENTAL_API"] = "1"  # only for the draft-v3 store below
    import numcodecs
    import numpy as np
    import zarr

    def fill(group: zarr.hierarchy.Group) -> None:
        group.attrs.update({"title": "written by zarr-python 2", "version": 1})
        temp = group.create_dataset(
            "grid/temp",
            shape=(4, 6),
            chunks=(2, 3),
            dtype="f4",
            fill_value=np.nan,
            dimension_separator="/",
            compressor=numcodecs.Blosc("zstd", 3, shuffle=numcodecs.Blosc.SHUFFLE),
        )
        temp[:2] = np.arange(12, dtype="f4").reshape(2, 6)  # rows 2-3: never written (NaN)
        temp.attrs["_ARRAY_DIMENSIONS"] = ["y", "x"]
        temp.attrs["units"] = "K"
        names = group.create_dataset(
            "names", shape=(5,), chunks=(2,), dtype=object, object_codec=numcodecs.VLenUTF8()
        )
        names[:] = np.array(["alpha", "béta", "", "delta", "ε"], dtype=object)
        counts = group.create_dataset(
            "counts",
            shape=(10,),
            chunks=(4,),
            dtype="i4",
            filters=[numcodecs.Delta(dtype="i4")],
            compressor=numcodecs.Zlib(level=1),
        )
        counts[:] = np.arange(10, dtype="i4") * 3
        codes = group.create_dataset("codes", shape=(3,), chunks=(3,), dtype="<U4")
        codes[:] = ["ab", "cde", "f"]
        flags = group.create_dataset("flags", shape=(4, 4), chunks=(4, 2), dtype=bool, order="F")
        flags[:] = np.eye(4, dtype=bool)

    stores = {}
    path = _fresh(folder / "hierarchy.zarr")
    store = zarr.DirectoryStore(str(path))
    fill(zarr.group(store=store))
    zarr.consolidate_metadata(store)
    stores["hierarchy.zarr"] = "groups, '/' separator, NaN fill, VLenUTF8, '<U4', .zmetadata"

    path = _fresh(folder / "array.zarr")
    arr = zarr.open_array(
        str(path), mode="w", shape=(7, 5), chunks=(3, 5), dtype="<i8", fill_value=-1
    )
    arr[:6] = np.arange(30).reshape(6, 5)
    stores["array.zarr"] = "an array at the root, default Blosc-lz4, one partial chunk unwritten"

    path = _fresh(folder / "hierarchy.zip")
    zstore = zarr.ZipStore(str(path), mode="w")
    fill(zarr.group(store=zstore))
    zstore.close()
    stores["hierarchy.zip"] = "the same hierarchy in a zarr.ZipStore"

    path = _fresh(folder / "container.n5")
    n5 = zarr.n5.N5Store(str(path))
    group = zarr.group(store=n5)
    group.attrs["title"] = "n5 by zarr 2"
    group.create_dataset("volume", shape=(4, 4), chunks=(2, 2), dtype="u2")[:] = 5
    stores["container.n5"] = "zarr.n5.N5Store (not Zarr: an N5 container)"

    path = _fresh(folder / "draft_v3.zarr")
    from zarr._storage.v3 import DirectoryStoreV3

    draft = zarr.group(store=DirectoryStoreV3(str(path)), zarr_version=3, path="/")
    draft.attrs["title"] = "draft v3 by zarr 2"
    temp = draft.create_dataset("temp", shape=(4, 6), chunks=(2, 3), dtype="f4")
    temp[:] = np.arange(24, dtype="f4").reshape(4, 6)
    stores["draft_v3.zarr"] = "zarr_version=3 with ZARR_V3_EXPERIMENTAL_API=1 (pre-1.0 draft)"

    _record(folder, {"zarr": zarr.__version__, "numcodecs": numcodecs.__version__}, stores)


# --- z5py ------------------------------------------------------------------------------------


def write_z5py(folder: Path) -> None:
    """Stores as z5py writes them: zarr v2 layout and N5."""
    import numpy as np
    import z5py

    stores = {}
    path = _fresh(folder / "z5.zarr")
    f = z5py.File(str(path), mode="w", use_zarr_format=True)
    f.attrs["title"] = "written by z5py"
    group = f.create_group("g")
    group.attrs["kind"] = "volume"
    for name, dtype, compression in (
        ("gzip", "float32", "gzip"),
        ("blosc", "int16", "blosc"),
        ("raw", "uint8", "raw"),
    ):
        ds = group.create_dataset(name, shape=(6, 8), chunks=(3, 4), dtype=dtype,
                                  compression=compression)  # fmt: skip
        ds[:] = np.arange(48).reshape(6, 8).astype(dtype)
    part = group.create_dataset("partial", shape=(6, 8), chunks=(3, 4), dtype="float64")
    part[:3, :4] = 1.5  # three chunks never written
    stores["z5.zarr"] = "zarr v2 layout (gzip written as zlib, blosc, raw, unwritten chunks)"

    path = _fresh(folder / "z5.n5")
    f = z5py.File(str(path), mode="w")
    ds = f.create_dataset("volume", shape=(4, 4), chunks=(2, 2), dtype="int16", compression="gzip")
    ds[:] = 7
    stores["z5.n5"] = "an N5 container (not Zarr)"
    _record(folder, {"z5py": z5py.__version__}, stores)


# --- zarrs (Rust codec pipeline for zarr-python 3) --------------------------------------------


def write_zarrs(folder: Path) -> None:
    """v3 stores whose chunks the Rust ``zarrs`` crate encoded (metadata: zarr-python 3)."""
    import numpy as np
    import zarr
    import zarrs
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

    zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
    stores = {}
    path = _fresh(folder / "sharded.zarr")
    group = zarr.open_group(str(path), mode="w", zarr_format=3, attributes={"title": "zarrs"})
    sharded = group.create_array(
        "sharded",
        shape=(8, 12),
        chunks=(2, 3),
        shards=(4, 6),
        dtype="f8",
        compressors=[ZstdCodec(level=3), Crc32cCodec()],
        fill_value=np.nan,
        dimension_names=("y", "x"),
    )
    sharded[:4] = np.arange(48, dtype="f8").reshape(4, 12)  # shards of rows 4-7: absent
    plain = group.create_array(
        "plain", shape=(9,), chunks=(4,), dtype="u2", compressors=BloscCodec(cname="lz4")
    )
    plain[:] = np.arange(9, dtype="u2")
    sub = group.create_group("sub", attributes={"level": 2})
    ints = sub.create_array("ints", shape=(3, 4), chunks=(3, 4), dtype="i4", compressors=None)
    ints[:] = np.arange(12, dtype="i4").reshape(3, 4)
    stores["sharded.zarr"] = "v3 group: sharding+zstd+crc32c, blosc, uncompressed; zarrs chunks"
    _record(
        folder, {"zarrs": zarrs.__version__, "zarr": zarr.__version__}, stores
    )  # fmt: skip


# --- netCDF-C NCZarr --------------------------------------------------------------------------


def write_nczarr(folder: Path) -> None:
    """Datasets as netCDF-C writes them in NCZarr and pure-zarr modes."""
    import netCDF4
    import numpy as np

    def dataset(ds: netCDF4.Dataset) -> None:
        ds.title = "written by netCDF-C"
        ds.createDimension("time", None)
        ds.createDimension("lat", 3)
        ds.createDimension("lon", 4)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = "days since 2000-01-01"
        time[:] = [0.0, 1.0]
        temp = ds.createVariable(
            "temp", "f4", ("time", "lat", "lon"), zlib=True, complevel=4, chunksizes=(1, 3, 4)
        )
        temp.units = "K"
        temp[:] = np.arange(24, dtype="f4").reshape(2, 3, 4)
        ds.createVariable("crs", "i4").grid_mapping_name = "latitude_longitude"
        forecast = ds.createGroup("forecast")
        forecast.createDimension("step", 5)
        step = forecast.createVariable("step", "i2", ("step",), fill_value=-9)
        step[:3] = [1, 2, 3]  # the rest: fill value

    stores = {}
    for mode, name in (("nczarr", "dataset.nczarr"), ("zarr", "dataset.zarr")):
        path = _fresh(folder / name)
        with netCDF4.Dataset(f"file://{path}#mode={mode},file", "w") as ds:
            dataset(ds)
        stores[name] = f"#mode={mode}: groups, unlimited dim, zlib, scalar, fill values"
    _record(
        folder,
        {"netCDF4": netCDF4.__version__, "netcdf-c": netCDF4.__netcdf4libversion__},
        stores,
    )


WRITERS: dict[str, Callable[[Path], None]] = {
    "zarr2": write_zarr2,
    "z5py": write_z5py,
    "zarrs": write_zarrs,
    "nczarr": write_nczarr,
}


def main(argv: list[str] | None = None) -> int:
    """Run each writer under its interpreter (or, with ``--writer``, in this one)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writer", choices=sorted(WRITERS), help="write one, in this Python")
    parser.add_argument(
        "--python", action="append", default=[], metavar="WRITER=PYTHON",
        help="interpreter that has the writer installed (repeatable)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.writer:
        WRITERS[args.writer](args.out / args.writer)
        return 0
    for spec in args.python:
        writer, _, python = spec.partition("=")
        if writer not in WRITERS or not python:
            parser.error(f"--python {spec!r}: expected WRITER=PYTHON, WRITER in {sorted(WRITERS)}")
        cmd = [python, __file__, "--writer", writer, "--out", str(args.out)]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
