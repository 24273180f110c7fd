"""The direct numcodecs decode path of the deep scan against zarr's own codec pipeline.

Every chain the direct path accepts is written by zarr into a real store, damaged in every
way the integrity checks know, and scanned twice on the real cluster: with the direct path
and with ``integrity.direct-decode: false`` (zarr's pipeline for every chunk).  Both must
report the same bad keys with the same codes, and the same value statistics.
"""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
import zarr
from numcodecs import Blosc, GZip, Zstd
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, ZstdCodec

from zarr_dask_utils import ChunkUnreadableError, check_data_integrity
from zarr_dask_utils._core.decoding.direct_decoder import DecodeFailure, DirectDecoder, direct_chain
from zarr_dask_utils.testing import chunks as damage

BLOSC3 = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
CHAINS = {
    "v2-blosc": {"zarr_format": 2, "compressors": Blosc(cname="lz4")},
    "v2-zstd": {"zarr_format": 2, "compressors": Zstd(level=1)},
    "v2-gzip-order-F": {"zarr_format": 2, "compressors": GZip(), "order": "F"},
    "v2-uncompressed-big-endian": {"zarr_format": 2, "compressors": None, "dtype": ">f8"},
    "v3-blosc": {"compressors": BLOSC3},
    "v3-blosc-crc32c": {"compressors": [BLOSC3, Crc32cCodec()]},
    "v3-zstd-big-endian": {
        "compressors": ZstdCodec(level=1),
        "serializer": BytesCodec(endian="big"),
    },
    "v3-gzip": {"compressors": GzipCodec()},
    "v3-uncompressed": {"compressors": None},
    "v3-crc32c-only": {"compressors": Crc32cCodec()},
    "v3-sharded-blosc": {"compressors": BLOSC3, "shards": (8, 12)},
    "v3-sharded-zstd-crc32c": {
        "compressors": [ZstdCodec(level=1), Crc32cCodec()],
        "shards": (8, 18),
    },
    "v3-sharded-uncompressed-rows": {"compressors": None, "shards": (16, 6)},
    "v3-sharded-blosc-rows": {"compressors": BLOSC3, "shards": (16, 6)},  # decoded in place
}


def _values(shape=(30, 20)):
    data = np.linspace(-5, 5, int(np.prod(shape)), dtype="f8").reshape(shape)
    data[3, 4] = np.nan
    data[25, 1] = np.inf
    data[29, 19] = -np.inf
    return data


def _build(path, options):
    kwargs = {"dtype": "f8", **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(path, shape=(30, 20), chunks=(8, 6), fill_value=0.0, **kwargs)
    arr[:] = _values()
    return arr


def _scan(path, client, *, direct):
    with dask.config.set({"zarr-dask-utils.integrity.direct-decode": direct}):
        return check_data_integrity(path, deep=True, nan_check=True, client=client, progress=False)


def _decode_codes(report):
    return sorted((f.code, f.location) for f in report.findings if f.code.startswith("chunk-"))


@pytest.mark.cluster
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_direct_path_reports_what_zarr_reports(chain, tmp_path, client):
    path = str(tmp_path / "a.zarr")
    _build(path, CHAINS[chain])
    assert direct_chain(zarr.open_array(path, mode="r")) is not None  # the path under test
    clean = _scan(path, client, direct=True)
    assert clean.ok, str(clean)
    stored = damage.chunk_keys(path, "")  # storage objects: chunks, or shards
    assert clean.chunks_decoded == len(stored) > 1
    assert clean.arrays == _scan(path, client, direct=False).arrays
    stats = clean.arrays[0]
    finite = _values()[np.isfinite(_values())]
    assert (stats["nan"], stats["inf"]) == (1, 2)
    assert (stats["min"], stats["max"]) == (finite.min(), finite.max())

    keys = damage.chunk_keys(path, "")
    damage.truncate_chunk(path, keys[0])
    damage.zero_byte_chunk(path, keys[1])
    damage.truncate_chunk(path, keys[2], keep=5)
    damage.flip_byte(path, keys[3])
    damage.flip_byte(path, keys[4], offset=0)
    direct = _scan(path, client, direct=True)
    piped = _scan(path, client, direct=False)
    assert _decode_codes(direct) == _decode_codes(piped), (str(direct), str(piped))
    assert direct.chunks_decoded == piped.chunks_decoded
    assert {keys[0], keys[1], keys[2]} <= {loc for _, loc in _decode_codes(direct)}
    if "crc32c" in chain:  # a flipped byte cannot pass a checksum
        assert ("chunk-checksum-mismatch", keys[3]) in _decode_codes(direct)


@pytest.mark.cluster
def test_direct_path_wrong_size_chunk(tmp_path, client):
    # a valid chunk of another array with a different chunk size decodes to the wrong size
    small = str(tmp_path / "small.zarr")
    big = str(tmp_path / "big.zarr")
    for path, chunks in ((small, (4, 4)), (big, (8, 8))):
        arr = zarr.create_array(path, shape=(8, 8), chunks=chunks, dtype="i4", compressors=BLOSC3)
        arr[:] = np.arange(64, dtype="i4").reshape(8, 8)
    (tmp_path / "big.zarr" / "c" / "0" / "0").write_bytes(
        (tmp_path / "small.zarr" / "c" / "0" / "0").read_bytes()
    )
    direct = _scan(big, client, direct=True)
    piped = _scan(big, client, direct=False)
    assert _decode_codes(direct) == _decode_codes(piped) == [("chunk-wrong-size", "c/0/0")]


@pytest.mark.parametrize(
    "compressors",
    [
        pytest.param(BLOSC3, id="v3-blosc"),
        pytest.param(ZstdCodec(level=1), id="v3-zstd"),
        pytest.param(None, id="v3-uncompressed"),
        pytest.param(Crc32cCodec(), id="v3-crc32c"),
    ],
)
def test_decoder_rejects_a_chunk_that_decodes_too_large(compressors, tmp_path):
    # a valid chunk of an array with bigger chunks (or a wider dtype): too many bytes, not fewer
    arrays = {}
    for name, chunks in (("small", (4, 4)), ("big", (8, 8))):
        arr = zarr.create_array(
            str(tmp_path / f"{name}.zarr"),
            shape=(8, 8),
            chunks=chunks,
            dtype="i4",
            compressors=compressors,
        )
        arr[:] = np.arange(64, dtype="i4").reshape(8, 8)
        arrays[name] = arr
    chain = direct_chain(arrays["small"])
    assert chain is not None
    big_chunk = (tmp_path / "big.zarr" / "c" / "0" / "0").read_bytes()
    failure = failure_of(DirectDecoder(chain), big_chunk)
    assert failure.code == "chunk-wrong-size"
    assert "decoded to 256 bytes, expected 64" in str(failure)


@pytest.mark.cluster
def test_direct_path_oversized_chunk(tmp_path, client):
    small = str(tmp_path / "small.zarr")
    big = str(tmp_path / "big.zarr")
    for path, chunks in ((small, (4, 4)), (big, (8, 8))):
        arr = zarr.create_array(path, shape=(8, 8), chunks=chunks, dtype="i4", compressors=BLOSC3)
        arr[:] = np.arange(64, dtype="i4").reshape(8, 8)
    (tmp_path / "small.zarr" / "c" / "0" / "0").write_bytes(
        (tmp_path / "big.zarr" / "c" / "0" / "0").read_bytes()
    )
    direct = _scan(small, client, direct=True)
    piped = _scan(small, client, direct=False)
    assert _decode_codes(direct) == _decode_codes(piped) == [("chunk-wrong-size", "c/0/0")]


@pytest.mark.parametrize(
    "cut",
    [pytest.param(1, id="last-byte"), pytest.param(20, id="most-of-the-last-chunk")],
)
def test_shard_whose_last_inner_chunk_runs_past_the_end(cut, tmp_path):
    # index first: the index survives truncation, the last inner chunk starts inside the
    # shard but its end (offset + length) lies past it
    arr = zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=(16,),
        chunks=(4,),
        shards={"shape": (16,), "index_location": "start"},
        dtype="f8",
        compressors=Crc32cCodec(),
    )
    arr[:] = np.arange(16, dtype="f8")
    chain = direct_chain(arr)
    assert chain is not None
    assert chain.shard is not None
    assert not chain.shard.index_at_end
    raw = (tmp_path / "a.zarr" / "c" / "0").read_bytes()
    decoder = DirectDecoder(chain)
    np.testing.assert_array_equal(decoder.values(decoder.decode(memoryview(raw))), arr[:])
    index = np.frombuffer(raw[: 16 * 4], dtype="<u8").reshape(4, 2)
    offset, length = (int(v) for v in index[-1])
    assert offset + length == len(raw)
    assert offset < len(raw) - cut  # the chunk still starts inside what is left
    failure = failure_of(decoder, raw[:-cut])
    assert failure.code == "chunk-wrong-size"
    assert f"inner chunk (3,) ends at byte {len(raw)} of a {len(raw) - cut}-byte shard" in str(
        failure
    )


@pytest.mark.parametrize(
    ("options", "why"),
    [
        pytest.param(
            {"shards": (16, 16), "filters": [zarr.codecs.TransposeCodec(order=(1, 0))]},
            "transpose inside shards",
            id="v3-sharded-transpose",
        ),
        pytest.param(
            {"filters": [zarr.codecs.TransposeCodec(order=(1, 0))]}, "transpose", id="v3-transpose"
        ),
        pytest.param({"zarr_format": 2, "filters": [Zstd()]}, "filters", id="v2-filters"),
        pytest.param({"dtype": str}, "vlen", id="v3-strings"),
        pytest.param({"zarr_format": 2, "dtype": str}, "object", id="v2-strings"),
    ],
)
def test_other_chains_use_zarrs_pipeline(options, why, tmp_path):
    kwargs = {"dtype": "f4", **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=(32, 32), chunks=(8, 8), **kwargs)
    assert direct_chain(arr) is None, why


def test_numcodecs_zarr3_codec_is_direct(tmp_path):
    from zarr.codecs.numcodecs import LZ4

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = zarr.create_array(
            str(tmp_path / "a.zarr"), shape=(16,), chunks=(8,), dtype="u2", compressors=LZ4()
        )
    arr[:] = np.arange(16, dtype="u2")
    chain = direct_chain(arr)
    assert chain is not None
    assert chain.steps[0][0] == "codec"
    decoder = DirectDecoder(chain)
    raw = (tmp_path / "a.zarr" / "c" / "1").read_bytes()
    assert decoder.values(decoder.decode(memoryview(raw))).tolist() == list(range(8, 16))


def test_decoder_failures_name_the_reason(tmp_path):
    arr = zarr.create_array(
        str(tmp_path / "a.zarr"),
        shape=(64,),
        chunks=(64,),
        dtype="f4",
        compressors=[BLOSC3, Crc32cCodec()],
    )
    arr[:] = np.arange(64, dtype="f4")
    chain = direct_chain(arr)
    assert chain is not None
    assert [s[0] for s in chain.steps] == ["crc32c", "blosc"]
    decoder = DirectDecoder(chain)
    raw = (tmp_path / "a.zarr" / "c" / "0").read_bytes()
    assert decoder.values(decoder.decode(memoryview(raw))).tolist() == list(range(64))

    assert failure_of(decoder, raw[:3]).code == "chunk-checksum-mismatch"  # cannot hold one
    flipped = bytearray(raw)
    flipped[20] ^= 0xFF
    assert failure_of(decoder, bytes(flipped)).code == "chunk-checksum-mismatch"
    no_crc = DirectDecoder(type(chain)(chain.steps[1:], chain.dtype, chain.chunk_shape))
    body = raw[:-4]
    assert "shorter than a blosc header" in str(failure_of(no_crc, body[:10]))
    assert "announces" in str(failure_of(no_crc, body + b"\0\0"))
    garbage = bytearray(body)
    garbage[16:] = bytes(len(garbage) - 16)
    assert failure_of(no_crc, bytes(garbage)).code == "chunk-decode-error"


def failure_of(decoder: DirectDecoder, data: bytes) -> DecodeFailure:
    with pytest.raises(DecodeFailure) as info:
        decoder.decode(memoryview(data))
    return info.value


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"compressors": BLOSC3}, id="direct"),
        pytest.param({"zarr_format": 2, "compressors": Zstd(level=1), "order": "F"}, id="v2-F"),
        pytest.param({"shards": (8, 12)}, id="sharded-with-an-empty-inner-chunk"),
    ],
)
def test_block_reader_returns_what_zarr_returns(options, tmp_path):
    from zarr_dask_utils._core.decoding.block_reader import DirectBlockReader
    from zarr_dask_utils._core.storage.locations import resolve_location

    path = str(tmp_path / "a.zarr")
    kwargs = {"dtype": "f8", **options}
    arr = zarr.create_array(path, shape=(30, 20), chunks=(4, 6), fill_value=-7.0, **kwargs)
    arr[:] = _values()
    arr[0:4, 0:6] = -7.0  # a chunk equal to the fill value: not stored in zarr 3
    reader = DirectBlockReader(resolve_location(path), "", arr.metadata.zarr_format)
    assert (reader.shape, reader.dtype, reader.ndim) == ((30, 20), np.dtype("f8"), 2)
    for key in [
        (slice(0, 30), slice(0, 20)),
        (slice(0, 8), slice(6, 18)),  # whole chunks
        (slice(3, 29), slice(5, 7)),  # parts of chunks, edge included
        (slice(0, 0), slice(0, 20)),  # empty
    ]:
        np.testing.assert_array_equal(reader[key], arr[key])


def test_block_reader_names_damaged_chunks(tmp_path):
    from zarr_dask_utils._core.decoding.block_reader import DirectBlockReader
    from zarr_dask_utils._core.storage.locations import resolve_location

    path = str(tmp_path / "a.zarr")
    arr = zarr.create_array(path, shape=(8,), chunks=(4,), dtype="f4", compressors=BLOSC3)
    arr[:] = np.arange(8, dtype="f4")
    damage.zero_byte_chunk(path, "c/1")
    reader = DirectBlockReader(resolve_location(path), "", 3)
    np.testing.assert_array_equal(reader[(slice(0, 4),)], np.arange(4, dtype="f4"))
    with pytest.raises(ChunkUnreadableError, match=r"Chunk 'c/1' of .*zdu check --deep"):
        reader[(slice(0, 8),)]


def test_bitwise_equal():
    from zarr_dask_utils.integrity.valuediff import bitwise_equal

    x = np.arange(12, dtype="f4").reshape(3, 4)
    assert bitwise_equal(x, x.copy())
    assert bitwise_equal(x[:, :3].copy(), x[:, :3].copy())  # 36 bytes: not a multiple of 8
    assert not bitwise_equal(x, x.astype("f8"))  # other dtype
    assert not bitwise_equal(x, x.T.copy().T)  # not C-contiguous: proves nothing
    y = x.copy()
    y[1, 1] = -0.0 if x[1, 1] == 0 else x[1, 1] + 1
    assert not bitwise_equal(x, y)
    assert not bitwise_equal(np.array(["a"], dtype=object), np.array(["a"], dtype=object))
