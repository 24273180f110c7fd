"""Checksum manifests on real stores: create, write locally or to S3, verify after damage."""

from __future__ import annotations

import hashlib
import json

import pytest

from zarr_dask_utils import InvalidOptionError, create_manifest, verify_manifest
from zarr_dask_utils.testing import chunks as damage

pytestmark = pytest.mark.cluster


def test_manifest_round_trip_and_every_damage(sample, client, tmp_path):
    so = sample.storage_options
    out = tmp_path / "manifest.json"
    made = create_manifest(sample.url, out, storage_options=so, client=client, progress=False)
    doc = json.loads(out.read_text())
    assert doc["format"] == "zarr-dask-utils-manifest"
    assert doc["version"] == 1
    assert doc["algorithm"] == made.algorithm == "blake2b"
    assert doc["count"] == made.objects == len(doc["objects"])
    first_key = sorted(doc["objects"])[0]
    assert set(doc["objects"][first_key]) == {"size", "hash"}
    assert "document" not in made.to_dict()
    assert made.document["objects"] == doc["objects"]
    clean = verify_manifest(sample.url, out, storage_options=so, client=client, progress=False)
    assert clean.findings == ()
    assert clean.ok
    assert clean.objects_checked == made.objects

    keys = damage.chunk_keys(sample.url, "climate/t2m", storage_options=so)
    damage.flip_byte(sample.url, keys[0], storage_options=so)
    damage.truncate_chunk(sample.url, keys[1], storage_options=so)
    damage.delete_chunk(sample.url, keys[2], storage_options=so)
    damage.add_junk_key(sample.url, "climate/t2m/extra", storage_options=so)
    report = verify_manifest(
        sample.url, str(out), storage_options=so, client=client, progress=False
    )
    assert {(f.code, f.location) for f in report.findings} == {
        ("object-changed", keys[0]),
        ("object-truncated", keys[1]),
        ("object-missing", keys[2]),
        ("object-extra", "climate/t2m/extra"),
    }
    assert (report.changed, report.missing, report.extra) == (2, 1, 1)
    assert not report.ok


@pytest.mark.s3
def test_manifest_written_to_s3_and_read_back(tmp_path, client, s3_bucket, s3_storage_options):
    store = tmp_path / "s.zarr"
    import zarr

    zarr.create_array(str(store), shape=(4,), chunks=(2,), dtype="i2")[:] = 3
    url = f"s3://{s3_bucket}/manifests/s.json"
    made = create_manifest(
        store,
        url,
        algorithm="sha256",
        output_storage_options=s3_storage_options,
        client=client,
        progress=False,
    )
    assert made.output == url
    assert made.objects == 3
    chunk = (store / "c" / "0").read_bytes()
    assert made.document["objects"]["c/0"]["hash"] == hashlib.sha256(chunk).hexdigest()
    ok = verify_manifest(
        store, url, manifest_storage_options=s3_storage_options, client=client, progress=False
    )
    assert ok.ok
    assert ok.algorithm == "sha256"
    (store / "c" / "1").write_bytes(b"")
    bad = verify_manifest(store, made.document, client=client, progress=False)
    assert [f.code for f in bad.findings] == ["object-truncated"]


def test_bad_manifests_are_rejected(tmp_path):
    import zarr

    zarr.create_array(str(tmp_path / "a.zarr"), shape=(2,), dtype="i1")
    (tmp_path / "m.json").write_text('{"format": "something-else"}')
    with pytest.raises(InvalidOptionError, match="not a zarr-dask-utils manifest"):
        verify_manifest(tmp_path / "a.zarr", tmp_path / "m.json")
    (tmp_path / "v.json").write_text(
        json.dumps({"format": "zarr-dask-utils-manifest", "version": 9, "objects": {}})
    )
    with pytest.raises(InvalidOptionError, match="version 9"):
        verify_manifest(tmp_path / "a.zarr", tmp_path / "v.json")
    with pytest.raises(InvalidOptionError, match="Cannot read the manifest"):
        verify_manifest(tmp_path / "a.zarr", tmp_path / "missing.json")
    with pytest.raises(InvalidOptionError, match="Unknown hash algorithm"):
        create_manifest(tmp_path / "a.zarr", algorithm="crc-nonsense")
    with pytest.raises(InvalidOptionError, match="output_storage_options"):
        create_manifest(
            tmp_path / "a.zarr",
            tmp_path / "o.json",
            output_storage_options={"a": 1},
            progress=False,
        )
