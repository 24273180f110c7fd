"""Advice that names a command is run; README examples run verbatim (issue 12, items 8, 10, 12)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest

from zarr_dask_utils.testing.cli_runner import run_zdu

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# Issue 12, item 12: README examples
# ---------------------------------------------------------------------------------------------


def _readme_block(marker: str) -> str:
    """The README ```python block containing *marker*."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"{len(found)} README python blocks contain {marker!r}"
    return found[0]


def _run_script(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env=env,
        check=False,
    )


@pytest.mark.slow
def test_readme_zarr_debugger_example_runs_verbatim(tmp_path: Path) -> None:
    code = _readme_block("ZarrDebugger()")
    done = _run_script(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # explain_zarr_error printed, then the four views of the trace report
    assert "zarr_format" in done.stdout or "format" in done.stdout
    assert "get" in done.stdout


def test_readme_client_example_is_guarded() -> None:
    code = _readme_block("client = Client()")
    guard = code.index('if __name__ == "__main__":')
    assert guard < code.index("client = Client()")
    assert guard < code.index("zdu.validate_metadata(")
    assert "__main__" in (ROOT / "README.md").read_text().split("client = Client()")[1][:2000]


# ---------------------------------------------------------------------------------------------
# Issue 12, item 8: every fix string that names a `zdu` command is run, and repairs repair
# ---------------------------------------------------------------------------------------------

_COMMAND = re.compile(r"`(zdu [^`]+)`")
_STORE_WORDS = {"STORE", "SRC", "PATH", "COPY", "A", "B"}
_OUTPUT_WORDS = {"DST", "NEW"}
_REPAIRS = {"consolidate", "repair"}  # advice that changes the store: the problem must go


def _findings(verb: list[str], store: str, scheduler: str) -> list[dict[str, Any]]:
    done = run_zdu(*verb, store, "--json", "--no-progress", scheduler=scheduler)
    assert done.returncode in (0, 1), (verb, done.returncode, done.stderr[-2000:])
    return list(json.loads(done.stdout)["findings"])


def _commands(findings: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(f["code"], c) for f in findings for c in _COMMAND.findall(f.get("fix") or "")}


def _argv(command: str, store: str, tmp_path: Path) -> list[str]:
    """The advice as an argv: placeholders replaced by the store and fresh outputs."""
    words = shlex.split(command)[1:]
    verb_len = 2 if words[:1] == ["manifest"] else 1
    verb, rest = words[:verb_len], words[verb_len:]
    out = [
        store
        if w in _STORE_WORDS
        else str(tmp_path / f"out-{uuid.uuid4().hex[:6]}.zarr")
        if w in _OUTPUT_WORDS
        else str(tmp_path / "manifest.json")
        if w == "MANIFEST.json"
        else w
        for w in rest
    ]
    assert "..." not in out, f"advice {command!r} has a placeholder nobody can run"
    if store not in out:  # `zdu consolidate`: the store the finding is about
        out.insert(0, store)
    if verb == ["manifest"] or (verb[:1] == ["manifest"] and len(verb) == 1):
        pytest.fail(f"advice {command!r} names a command group, not a command")
    if verb[:1] == ["compare"] and out.count(store) < 2:
        out.insert(1, store)
    if verb[:1] == ["manifest"] and not any(w.endswith(".json") for w in out):
        out.append(str(tmp_path / "manifest.json"))
    if verb[:1] not in (["manifest"],):
        out.append("--no-progress")
    return [*verb, *out]


def _run_advice(
    producer: list[str], store: str, scheduler: str, tmp_path: Path
) -> set[tuple[str, str]]:
    """Run every command the *producer*'s findings advise; return ``{(code, command)}``."""
    advised = _commands(_findings(producer, store, scheduler))
    for code, command in sorted(advised, key=lambda c: (c[1].startswith("zdu repair"), c)):
        argv = _argv(command, store, tmp_path)
        done = run_zdu(*argv, scheduler=scheduler)
        assert done.returncode in (0, 1), (code, argv, done.returncode, done.stderr[-2000:])
        if argv[0] in _REPAIRS and (argv[0] != "repair" or "--apply" in argv):
            left = {f["code"] for f in _findings(producer, store, scheduler)}
            assert code not in left, (code, argv, done.stdout[-2000:])
        if argv[0] == "rechunk":
            out = next(w for w in argv if w.endswith(".zarr") and w != store)
            assert code not in {f["code"] for f in _findings(producer, out, scheduler)}
    return advised


@pytest.fixture
def scheduler(client: Any) -> str:
    return str(client.scheduler.address)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_metadata_advice_runs_and_repairs(tmp_path: Path, scheduler: str, zarr_format: int):
    from zarr_dask_utils.testing import build_sample_hierarchy, corrupt

    seen: set[str] = set()
    missing = str(tmp_path / "unconsolidated.zarr")
    build_sample_hierarchy(missing, zarr_format=zarr_format, consolidated=False)
    seen |= {c for c, _ in _run_advice(["validate"], missing, scheduler, tmp_path)}

    stale = str(tmp_path / "stale.zarr")
    build_sample_hierarchy(stale, zarr_format=zarr_format)
    corrupt.add_array_unconsolidated(stale, "climate/late")
    seen |= {c for c, _ in _run_advice(["validate"], stale, scheduler, tmp_path)}

    no_group = str(tmp_path / "nogroup.zarr")
    build_sample_hierarchy(no_group, zarr_format=zarr_format)
    corrupt.remove_group_document(no_group, "climate/static")
    seen |= {c for c, _ in _run_advice(["validate"], no_group, scheduler, tmp_path)}
    assert {"consolidated-missing", "consolidated-stale"} <= seen, seen


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_single_array_store_gets_no_consolidate_advice(
    tmp_path: Path, scheduler: str, zarr_format: int
):
    import zarr

    path = str(tmp_path / "array.zarr")
    arr = zarr.create_array(path, shape=(8, 8), chunks=(4, 4), dtype="f4", zarr_format=zarr_format)
    arr[:] = 1.0
    for producer in (["validate"], ["doctor"]):
        found = _findings(producer, path, scheduler)
        assert "consolidated-missing" not in {f["code"] for f in found}, found
        assert not any("zdu consolidate" in (f.get("fix") or "") for f in found), found
        _run_advice(producer, path, scheduler, tmp_path)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_doctor_and_check_advice_runs(tmp_path: Path, scheduler: str, zarr_format: int):
    import zarr

    from zarr_dask_utils.testing import chunks

    path = str(tmp_path / "raw.zarr")
    group = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    arr = group.create_array(
        "t2m",
        shape=(120, 4, 4),
        chunks=(1, 4, 4),
        dtype="f4",
        compressors=None,
        **({"dimension_names": ("time", "lat", "lon")} if zarr_format == 3 else {}),
        **(
            {"attributes": {"_ARRAY_DIMENSIONS": ["time", "lat", "lon"]}}
            if zarr_format == 2
            else {}
        ),
    )
    arr[:] = 1.0
    keys = chunks.chunk_keys(path, "t2m")
    chunks.delete_chunk(path, keys[-1])
    seen = {c for c, _ in _run_advice(["doctor"], path, scheduler, tmp_path)}
    assert "uncompressed" in seen, seen  # the advice `--compressor zstd:3` ran and compressed
    chunks.truncate_chunk(path, keys[0])
    _run_advice(["check", "--deep"], path, scheduler, tmp_path)


@pytest.mark.parametrize(
    ("name", "zarr_format", "codec"),
    [
        ("zstd:3", 2, "Zstd"),
        ("gzip", 2, "GZip"),
        ("blosc-zstd", 2, "Blosc"),
        ("zstd:3", 3, "ZstdCodec"),
        ("gzip:1", 3, "GzipCodec"),
        ("blosc-lz4", 3, "BloscCodec"),
    ],
)
def test_compressor_names(name: str, zarr_format: int, codec: str) -> None:
    from zarr_dask_utils._core.compressors import compressors_for

    (made,) = compressors_for(name, zarr_format)
    assert type(made).__name__ == codec
    assert compressors_for("none", zarr_format) == ()


@pytest.mark.parametrize("bad", ["codec-zstd", "zstd:x", "none:3", ""])
def test_compressor_bad_names_are_bad_input(bad: str) -> None:
    from zarr_dask_utils._core.errors import InvalidOptionError
    from zarr_dask_utils._core.pure.compressors import parse_compressor

    with pytest.raises(InvalidOptionError):
        parse_compressor(bad)


@pytest.mark.cluster
@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("compressor", ["zstd:3", "none", "blosc-zstd"])
def test_rechunk_writes_the_chosen_compressor(
    tmp_path: Path, client: Any, zarr_format: int, compressor: str
) -> None:
    import numpy as np
    import zarr

    from zarr_dask_utils import rechunk_array

    src, dst = str(tmp_path / "src.zarr"), str(tmp_path / "dst.zarr")
    a = zarr.create_array(src, shape=(8, 8), chunks=(1, 8), dtype="i4", zarr_format=zarr_format)
    a[:] = np.arange(64).reshape(8, 8)
    rechunk_array(src, (8, 1), dst, compressors=compressor, client=client, progress=False)
    out = zarr.open_array(dst, mode="r")
    np.testing.assert_array_equal(out[:], a[:])
    names = [type(c).__name__.lower() for c in out.compressors]
    if compressor == "none":
        assert names == []
    else:
        assert len(names) == 1, names
        assert compressor.split(":")[0].split("-")[0] in names[0], names


def test_rechunk_cli_rejects_unknown_compressor(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from zarr_dask_utils.cli.main import cli

    done = CliRunner().invoke(
        cli,
        [
            "rechunk",
            str(tmp_path / "a.zarr"),
            str(tmp_path / "b.zarr"),
            "--chunks",
            "1",
            "--max-mem",
            "1MiB",
            "--compressor",
            "brotli",
        ],
    )
    assert done.exit_code == 2, done.output
    assert "brotli" in done.output


# ---------------------------------------------------------------------------------------------
# Issue 12, item 10: backups live outside the hierarchy; zarr-python 3 sees nothing foreign
# ---------------------------------------------------------------------------------------------


def _open_and_list(path: str) -> list[str]:
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Object at .zdu is not recognized …" would raise
        group = zarr.open_group(path, mode="r")
        members = sorted(name for name, _ in group.members(max_depth=None))
        plain = zarr.open_group(path, mode="r", use_consolidated=False)
        members_plain = sorted(name for name, _ in plain.members(max_depth=None))
    assert members == members_plain
    return members


@pytest.mark.cluster
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_consolidate_and_repair_backups_beside_the_store(
    tmp_path: Path, client: Any, zarr_format: int
) -> None:
    from zarr_dask_utils import consolidate_metadata, repair_metadata
    from zarr_dask_utils.testing import build_sample_hierarchy, corrupt

    path = str(tmp_path / "data.zarr")
    build_sample_hierarchy(path, zarr_format=zarr_format)
    corrupt.add_array_unconsolidated(path, "climate/late")
    report = consolidate_metadata(path, client=client, progress=False)
    assert report.backup is not None
    assert Path(report.backup).is_file()
    assert Path(report.backup).is_relative_to(tmp_path / "data.zarr.zdu-backups")
    assert report.backup in str(report)
    assert not (tmp_path / "data.zarr" / ".zdu").exists()
    assert "climate/late" in _open_and_list(path)

    corrupt.add_array_unconsolidated(path, "climate/later")
    done = repair_metadata(path, dry_run=False, client=client, progress=False)
    assert done.backups, str(done)
    for where in done.backups:
        assert Path(where).is_file()
        assert Path(where).is_relative_to(tmp_path / "data.zarr.zdu-backups")
    assert "climate/later" in _open_and_list(path)
    assert not (tmp_path / "data.zarr" / ".zdu").exists()


@pytest.mark.cluster
def test_backup_dir_is_chosen_and_must_lie_outside(tmp_path: Path, client: Any) -> None:
    from zarr_dask_utils import consolidate_metadata
    from zarr_dask_utils._core.errors import OverlappingLocationsError
    from zarr_dask_utils.testing import build_sample_hierarchy, corrupt

    path = str(tmp_path / "data.zarr")
    build_sample_hierarchy(path, zarr_format=3)
    corrupt.add_array_unconsolidated(path, "extra")
    with pytest.raises(OverlappingLocationsError):
        consolidate_metadata(path, backup_dir=f"{path}/bk", client=client, progress=False)
    chosen = tmp_path / "my-backups"
    report = consolidate_metadata(path, backup_dir=str(chosen), client=client, progress=False)
    assert report.backup is not None
    assert Path(report.backup).is_relative_to(chosen)
    assert Path(report.backup).is_file()
    assert not (tmp_path / "data.zarr.zdu-backups").exists()
    _open_and_list(path)


@pytest.mark.slow
@pytest.mark.cluster
def test_cli_backup_dir(tmp_path: Path, scheduler: str) -> None:
    from zarr_dask_utils.testing import build_sample_hierarchy, corrupt

    path = str(tmp_path / "data.zarr")
    build_sample_hierarchy(path, zarr_format=2)
    corrupt.add_array_unconsolidated(path, "extra")
    chosen = tmp_path / "elsewhere"
    done = run_zdu(
        "repair",
        path,
        "--apply",
        "--backup-dir",
        str(chosen),
        "--json",
        "--no-progress",
        scheduler=scheduler,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    backups = json.loads(done.stdout)["backups"]
    assert backups
    assert all(Path(b).is_relative_to(chosen) and Path(b).is_file() for b in backups)
    _open_and_list(path)


@pytest.mark.cluster
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_legacy_in_store_backups_are_skipped_and_noted(
    tmp_path: Path, client: Any, zarr_format: int
) -> None:
    from zarr_dask_utils import consolidate_metadata, repair_metadata, validate_metadata
    from zarr_dask_utils.testing import build_sample_hierarchy, corrupt

    path = str(tmp_path / "data.zarr")
    build_sample_hierarchy(path, zarr_format=zarr_format)
    corrupt.write_bytes(path, ".zdu/backups/20240101T000000Z-abcdef/zarr.json", b"{}")
    assert validate_metadata(path, client=client, progress=False).findings == ()
    corrupt.add_array_unconsolidated(path, "extra")
    report = consolidate_metadata(path, client=client, progress=False)
    assert report.legacy_backups == 1
    assert "data.zarr.zdu-backups/" in str(report)
    assert ".zdu/backups/" in str(report)
    assert report.to_dict()["legacy_backups"] == 1
    dry = repair_metadata(path, client=client, progress=False)
    assert dry.legacy_backups == 1


# ---------------------------------------------------------------------------------------------
# Advice on a zip store: zdu does not write into zips, so writing advice runs on a copy
# ---------------------------------------------------------------------------------------------


def _zip_hierarchy(path: Path, zarr_format: int) -> str:
    """A zip holding an unconsolidated group with one array, as zarr-python 3 writes it."""
    import zarr

    store = zarr.storage.ZipStore(path, mode="w")
    group = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    group.create_array("a", shape=(8, 8), chunks=(4, 4), dtype="f4")[:] = 1.0
    store.close()
    return str(path)


def _run_on_copy(command: str, store: str, copy: str, scheduler: str) -> None:
    """Run one advised command with STORE the zip and COPY (or COPY/inner) the extracted copy."""
    words = [
        store if w == "STORE" else copy + w[len("COPY") :] if w.startswith("COPY") else w
        for w in shlex.split(command)
    ]
    assert "..." not in words, command
    if words[0] == "python":
        done = subprocess.run(
            [sys.executable, *words[1:]], capture_output=True, text=True, check=False
        )
    else:
        done = run_zdu(*words[1:], "--no-progress", scheduler=scheduler)
    assert done.returncode in (0, 1), (command, done.returncode, done.stderr[-2000:])


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zip_store_advice_works_on_an_extracted_copy(
    tmp_path: Path, scheduler: str, zarr_format: int
) -> None:
    zip_store = _zip_hierarchy(tmp_path / "data.zip", zarr_format)
    before = Path(zip_store).read_bytes()
    for producer in (["validate"], ["doctor"]):
        found = _findings(producer, zip_store, scheduler)
        assert "consolidated-missing" in {f["code"] for f in found}, found
        copy = str(tmp_path / f"copy-{producer[0]}.zarr")
        fixes = [f["fix"] for f in found if f["code"] == "consolidated-missing"]
        assert all("zip" in fix and "copy" in fix for fix in fixes), fixes
        for fix in fixes:
            commands = re.findall(r"`([^`]+)`", fix)
            assert commands[0].startswith("python -m zipfile -e"), fix
            for command in commands:
                if command.startswith("zdu "):
                    assert command.split()[2].startswith("COPY"), fix  # never the zip itself
                _run_on_copy(command, zip_store, copy, scheduler)
        after = {f["code"] for f in _findings(producer, copy, scheduler)}
        assert "consolidated-missing" not in after, after
        # every other command advised on the zip runs on the zip as it is
        for code, command in _commands(found):
            if command.split()[1] not in ("consolidate", "repair"):
                done = run_zdu(*_argv(command, zip_store, tmp_path), scheduler=scheduler)
                assert done.returncode in (0, 1), (code, command, done.stderr[-2000:])
    assert Path(zip_store).read_bytes() == before  # nothing was written into the zip
