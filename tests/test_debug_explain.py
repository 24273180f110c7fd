"""explain_zarr_error: every row of the table, provoked through the real library.

Each case raises the real exception from zarr, numcodecs, s3fs/botocore (against the moto server
on loopback, or a closed port), xarray or fsspec, then checks the explanation's ``kind``.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

from zarr_dask_utils import explain_zarr_error
from zarr_dask_utils.debug.error_table import RULES


@dataclass
class Ctx:
    tmp: Path
    request: pytest.FixtureRequest

    def p(self, name: str) -> str:
        return str(self.tmp / name)

    def group_v3(self) -> str:
        g = zarr.open_group(self.p("g3.zarr"), mode="w", zarr_format=3)
        g.create_array("a", shape=(10, 10), chunks=(5, 5), dtype="f4")[:] = 1.0
        return self.p("g3.zarr")

    def array_v2(self) -> str:
        zarr.create_array(self.p("a2.zarr"), shape=(4,), chunks=(2,), dtype="i4", zarr_format=2)
        return self.p("a2.zarr")

    def dataset(self) -> tuple[xr.Dataset, str]:
        ds = xr.Dataset({"v": (("t",), np.arange(10.0))})
        path = self.p("x.zarr")
        ds.to_zarr(path, mode="w", consolidated=False, encoding={"v": {"chunks": (4,)}})
        return ds, path

    def s3(self) -> dict[str, Any]:
        return dict(self.request.getfixturevalue("s3_storage_options"))


def _edit_json(path: str, **changes: Any) -> None:
    doc = json.loads(Path(path).read_text())
    for key, value in changes.items():
        if key == "append_codec":
            doc["codecs"].append(value)
        else:
            doc[key] = value
    Path(path).write_text(json.dumps(doc))


# --- provocations: each raises the real exception -------------------------------------------


def _path_not_found(c: Ctx) -> None:
    zarr.open_group(c.p("nope.zarr"), mode="r")


def _wrong_node_type(c: Ctx) -> None:
    zarr.open_array(c.group_v3(), mode="r")


def _group_is_array(c: Ctx) -> None:
    zarr.create_array(c.p("a3.zarr"), shape=(4,), chunks=(2,), dtype="i4", zarr_format=3)
    zarr.open_group(c.p("a3.zarr"), mode="r")


def _already_exists_zarr(c: Ctx) -> None:
    zarr.open_group(c.group_v3(), mode="w-")


def _already_exists_xarray(c: Ctx) -> None:
    ds, path = c.dataset()
    ds.to_zarr(path, consolidated=False)


def _array_not_found_wrong_format(c: Ctx) -> None:
    zarr.open_array(c.array_v2(), mode="r", zarr_format=3)


def _group_not_found_wrong_format(c: Ctx) -> None:
    zarr.open_group(c.group_v3(), mode="r", zarr_format=2)


def _stale_consolidated(c: Ctx) -> None:
    path = c.group_v3()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: consolidated metadata is not in the v3 spec
        zarr.consolidate_metadata(path)
        zarr.open_group(path, mode="a", use_consolidated=False).create_array(
            "late", shape=(2,), dtype="i4"
        )
        zarr.open_group(path, mode="r")["late"]


def _broken_json(c: Ctx) -> None:
    path = c.group_v3()
    doc = Path(path, "zarr.json")
    doc.write_text(doc.read_text()[:20])
    zarr.open_group(path, mode="r")


def _nested_json(c: Ctx) -> None:
    path = c.group_v3()
    Path(path, "zarr.json").write_text("[" * 100_000)
    zarr.open_group(path, mode="r")


def _unknown_codec_v3(c: Ctx) -> None:
    path = c.group_v3()
    _edit_json(f"{path}/a/zarr.json", append_codec={"name": "lz77"})
    zarr.open_array(f"{path}/a", mode="r")


def _unknown_codec_v2(c: Ctx) -> None:
    path = c.array_v2()
    _edit_json(f"{path}/.zarray", compressor={"id": "lz77"})
    zarr.open_array(path, mode="r")


def _bad_zarr_format(c: Ctx) -> None:
    zarr.open_group(c.group_v3(), mode="r", zarr_format=4)  # type: ignore[arg-type]


def _invalid_metadata(c: Ctx) -> None:
    path = c.group_v3()
    _edit_json(f"{path}/a/zarr.json", node_type="table")
    zarr.open_array(f"{path}/a", mode="r")


def _fill_overflow(c: Ctx) -> None:
    zarr.create_array(zarr.storage.MemoryStore(), shape=(4,), dtype="i1", fill_value=300)


def _fill_type(c: Ctx) -> None:
    zarr.create_array(zarr.storage.MemoryStore(), shape=(4,), dtype="f4", fill_value="abc")


def _chunks_ndim(c: Ctx) -> None:
    zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 4), chunks=(2,), dtype="f4")


def _missing_shape(c: Ctx) -> None:
    zarr.open_array(c.p("new.zarr"), mode="a")


def _read_only(c: Ctx) -> None:
    zarr.open_array(f"{c.group_v3()}/a", mode="r")[0, 0] = 5


def _index_dimensions(c: Ctx) -> None:
    zarr.open_array(f"{c.group_v3()}/a", mode="r+")[0:2, 0:2] = np.ones((5,))


def _out_of_bounds(c: Ctx) -> None:
    zarr.open_array(f"{c.group_v3()}/a", mode="r")[20, 0]


def _value_shape(c: Ctx) -> None:
    z = zarr.create_array(c.p("s.zarr"), shape=(10,), chunks=(5,), dtype="f4")
    z[0:4] = np.ones(3)


def _value_dtype(c: Ctx) -> None:
    zarr.open_array(f"{c.group_v3()}/a", mode="r+")[0:2, 0:2] = np.array([["a", "b"], ["c", "d"]])


def _corrupt_chunk(c: Ctx) -> None:
    z = zarr.create_array(c.p("cc.zarr"), shape=(100,), chunks=(100,), dtype="f8")
    z[:] = np.arange(100)
    Path(c.p("cc.zarr"), "c", "0").write_bytes(b"garbage!" * 3)
    zarr.open_array(c.p("cc.zarr"), mode="r")[:]


def _truncated_chunk(compressor: str) -> Callable[[Ctx], None]:
    """A v2 array compressed with *compressor*, one chunk cut in half, read through zarr."""

    def provoke(c: Ctx) -> None:
        import numcodecs

        codec = numcodecs.get_codec({"id": compressor})
        path = c.p(f"{compressor}.zarr")
        z = zarr.create_array(
            path, shape=(1000,), chunks=(1000,), dtype="f8", zarr_format=2, compressors=codec
        )
        z[:] = np.arange(1000)
        raw = Path(path, "0").read_bytes()
        Path(path, "0").write_bytes(raw[: len(raw) // 2])
        zarr.open_array(path, mode="r")[:]

    return provoke


def _xarray_region_unaligned(c: Ctx) -> None:
    ds, path = c.dataset()
    part = ds.isel(t=slice(1, 3)).chunk({"t": 2})
    part.to_zarr(path, region={"t": slice(1, 3)}, consolidated=False)


def _xarray_no_dims(c: Ctx) -> None:
    g = zarr.open_group(c.p("plain.zarr"), mode="w", zarr_format=2)
    g.create_array("b", shape=(4,), chunks=(2,), dtype="i4")
    xr.open_zarr(c.p("plain.zarr"), consolidated=False)


def _xarray_new_vars(c: Ctx) -> None:
    ds, path = c.dataset()
    ds.assign(w=ds.v).to_zarr(path, region={"t": slice(0, 4)}, consolidated=False)


def _xarray_append_dim(c: Ctx) -> None:
    ds, path = c.dataset()
    ds.to_zarr(path, append_dim="zz", consolidated=False)


def _s3_no_bucket(c: Ctx) -> None:
    zarr.create_array("s3://no-such-bucket/x.zarr", shape=(2,), dtype="i4", storage_options=c.s3())


def _s3_unreachable(c: Ctx) -> None:
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = {
        **c.s3(),
        "endpoint_url": f"http://127.0.0.1:{port}",
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
        "skip_instance_cache": True,
    }
    zarr.open_group("s3://bucket/x.zarr", mode="r", storage_options=options)


def _local_permission_denied(c: Ctx) -> None:
    from zarr_dask_utils.testing.permissions import unwritable

    with unwritable(c.tmp):  # as root: immutable, so a real [Errno 1] even for root
        zarr.open_group(c.p("new.zarr"), mode="w")


def _worker_died(c: Ctx) -> None:
    # a task that kills its worker process, on a cluster of its own that allows no retries
    import dask
    from distributed import Client, LocalCluster

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.submit(os._exit, 1, pure=False).result(timeout=120)


def _s3_access_denied(c: Ctx) -> None:
    server = c.request.getfixturevalue("s3_auth_server")
    options = {**server.storage_options(secret="wrong-secret"), "skip_instance_cache": True}
    zarr.open_group(server.url, mode="r", storage_options=options)


def _s3_no_credentials(c: Ctx) -> None:
    mp = c.request.getfixturevalue("monkeypatch")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        mp.delenv(name, raising=False)
    mp.delenv("AWS_SECURITY_TOKEN", raising=False)
    endpoint = c.s3()["endpoint_url"]
    options = {"endpoint_url": endpoint, "skip_instance_cache": True}
    zarr.open_group("s3://bucket/x.zarr", mode="r", storage_options=options)


def _protocol_not_installed(c: Ctx) -> None:
    zarr.open_group("gcs://bucket/x.zarr", mode="r")


def _protocol_unknown(c: Ctx) -> None:
    zarr.open_group("nosuchproto://bucket/x.zarr", mode="r")


def _storage_options_unused(c: Ctx) -> None:
    zarr.open_group(c.group_v3(), mode="r", storage_options={"anon": True})


CASES: list[tuple[str, Callable[[Ctx], None], str]] = [
    ("path-missing", _path_not_found, "path-not-found"),
    ("array-is-group", _wrong_node_type, "wrong-node-type"),
    ("group-is-array", _group_is_array, "group-is-array"),
    ("exists-zarr", _already_exists_zarr, "already-exists"),
    ("exists-xarray", _already_exists_xarray, "already-exists"),
    ("v3-asked-of-v2", _array_not_found_wrong_format, "array-not-found"),
    ("v2-asked-of-v3", _group_not_found_wrong_format, "group-not-found"),
    ("stale-consolidated", _stale_consolidated, "stale-consolidated"),
    ("broken-json", _broken_json, "metadata-json-invalid"),
    ("nested-json", _nested_json, "metadata-json-too-deep"),
    ("unknown-codec-v3", _unknown_codec_v3, "unknown-codec"),
    ("unknown-codec-v2", _unknown_codec_v2, "unknown-codec"),
    ("zarr-format-4", _bad_zarr_format, "zarr-format-invalid"),
    ("bad-node-type", _invalid_metadata, "metadata-invalid"),
    ("fill-overflow", _fill_overflow, "fill-value-invalid"),
    ("fill-type", _fill_type, "fill-value-invalid"),
    ("chunks-ndim", _chunks_ndim, "chunks-shape-mismatch"),
    ("missing-shape", _missing_shape, "missing-shape"),
    ("read-only", _read_only, "read-only"),
    ("too-many-indices", _index_dimensions, "index-dimensions"),
    ("out-of-bounds", _out_of_bounds, "out-of-bounds"),
    ("value-shape", _value_shape, "value-shape-mismatch"),
    ("value-dtype", _value_dtype, "value-dtype-mismatch"),
    ("corrupt-chunk", _corrupt_chunk, "chunk-decode-failed"),
    ("truncated-zlib", _truncated_chunk("zlib"), "chunk-decompress-failed"),
    ("truncated-gzip", _truncated_chunk("gzip"), "chunk-decompress-failed"),
    ("truncated-bz2", _truncated_chunk("bz2"), "chunk-decompress-failed"),
    ("truncated-lz4", _truncated_chunk("lz4"), "chunk-decompress-failed"),
    ("xarray-region", _xarray_region_unaligned, "xarray-region-unaligned"),
    ("xarray-no-dims", _xarray_no_dims, "xarray-dimensions-missing"),
    ("xarray-new-vars", _xarray_new_vars, "xarray-new-variables-in-region"),
    ("xarray-append-dim", _xarray_append_dim, "xarray-append-dim"),
    ("protocol-missing", _protocol_not_installed, "protocol-not-installed"),
    ("protocol-unknown", _protocol_unknown, "protocol-unknown"),
    ("options-unused", _storage_options_unused, "storage-options-unused"),
    ("local-denied", _local_permission_denied, "local-permission-denied"),
    pytest.param("worker-died", _worker_died, "worker-died", marks=pytest.mark.slow),
    pytest.param("s3-no-bucket", _s3_no_bucket, "s3-no-such-bucket", marks=pytest.mark.s3),
    pytest.param("s3-unreachable", _s3_unreachable, "endpoint-unreachable", marks=pytest.mark.s3),
    pytest.param("s3-denied", _s3_access_denied, "s3-access-denied", marks=pytest.mark.s3),
    pytest.param("s3-no-creds", _s3_no_credentials, "s3-no-credentials", marks=pytest.mark.s3),
]


def _ids(case: Any) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize(("name", "provoke", "kind"), CASES, ids=[_ids(c) for c in CASES])
def test_real_error_is_explained(name, provoke, kind, tmp_path, request):
    # library warnings must not replace the error: ignore them while provoking it
    with pytest.raises(BaseException) as info, warnings.catch_warnings():  # noqa: PT012
        warnings.simplefilter("ignore")
        provoke(Ctx(tmp_path, request))
    explanation = explain_zarr_error(info.value)
    assert explanation.known, f"{name}: {explanation}"
    assert explanation.kind == kind, f"{name}: {type(info.value).__name__}: {info.value}"
    assert explanation.what
    assert explanation.fix
    assert explanation.exception is info.value
    text = str(explanation)
    assert explanation.fix in text
    assert explanation.message in text
    assert json.loads(json.dumps(explanation.to_dict()))["kind"] == kind
    assert kind in explanation._repr_html_()


def test_every_row_is_provoked_by_a_test():
    provoked = {_case_kind(c) for c in CASES}
    assert {r.kind for r in RULES} == provoked
    assert len(provoked) >= 20


def _case_kind(case: Any) -> str:
    return case.values[2] if hasattr(case, "values") else case[2]


def test_unknown_error_passes_through_unchanged():
    def boom() -> None:
        raise ZeroDivisionError("nothing to do with zarr")

    with pytest.raises(ZeroDivisionError) as info:
        boom()
    explanation = explain_zarr_error(info.value)
    assert not explanation.known
    assert explanation.kind == "unknown"
    assert explanation.exception is info.value
    assert info.value.__traceback__ is not None  # traceback kept
    assert "nothing to do with zarr" in str(explanation)
    assert explanation._repr_html_().startswith("<div>")


def test_chained_cause_is_found_and_credentials_redacted():
    try:
        try:
            raise KeyError("'late' not found in consolidated metadata.")
        except KeyError as inner:
            raise RuntimeError("s3://user:pw@bucket/x failed") from inner
    except RuntimeError as outer:
        explanation = explain_zarr_error(outer)
    assert explanation.kind == "stale-consolidated"
    assert explanation.exception_type == "KeyError"
    unknown = explain_zarr_error(RuntimeError("s3://user:pw@bucket/x failed"))
    assert "pw" not in unknown.message


def test_own_errors_are_explained_as_themselves(tmp_path):
    from zarr_dask_utils import StoreNotFoundError, open_node

    with pytest.raises(StoreNotFoundError) as info:
        open_node(tmp_path / "missing.zarr")
    explanation = explain_zarr_error(info.value)
    assert explanation.known
    assert explanation.kind == "store-not-found"
    assert str(explanation) == str(info.value)


def test_cli_renders_explanations_for_library_errors(tmp_path, capsys):
    from zarr_dask_utils.cli.render import EXIT_USAGE, render_error

    with pytest.raises(FileNotFoundError) as info:
        zarr.open_group(str(tmp_path / "nope.zarr"), mode="r")
    assert render_error(info.value, as_json=True, debug=False) == EXIT_USAGE
    out = capsys.readouterr()
    payload = json.loads(out.out)["error"]
    assert payload["kind"] == "path-not-found"
    assert payload["fix"]
    assert "fix:" in out.err
    assert "Traceback" not in out.err

    with pytest.raises(ZeroDivisionError) as unknown:
        _ = 1 / 0
    assert render_error(unknown.value, as_json=False, debug=True) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unexpected ZeroDivisionError" in err
    assert "Traceback" in err  # --debug shows it
