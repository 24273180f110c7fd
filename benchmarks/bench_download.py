"""``parallel_download`` on the S3 latency rig, beside the plain clients (issue 15, part 2).

Builds the store of ``bench_s3rig.py`` on an :class:`~zarr_dask_utils.testing.s3rig.S3Rig`
(moto processes behind 20 ms ± 2 ms per request): ``small`` (``--small`` chunks of 57 KiB)
and ``large`` (``--large`` chunks of 14 MB), then copies each array to local disk with:

- ``s3fs cat_file, sequential``: one object after another (the baseline of the ratios);
- ``s3fs get(recursive=True)``: one listing, then s3fs's own batched GETs;
- ``obstore, 64 in flight``: one listing, then ``get_async`` (if obstore is installed);
- ``parallel_download``: ours (``arrays=<name>``), on one Dask client made before the timing
  (threads in this process, as the embedded cluster runs by default), verify on; once forced
  to s3fs (``zdu_engine="s3fs"``) and once with the engine it chooses itself (obstore when
  installed).  The phases of ours (open, list, check-target, copy, finish) print after the
  tables.

Every row is checked byte for byte against the source.  Between rows the garbage of the last
one is collected in the main thread (:func:`collect_closed_clients`): see there why.  One run;
the ratios to the sequential row (and ours to ``fs.get``) are printed whatever they are, with
the load average (the machine is shared).  Goals (issue 15): >= 5x sequential and >= 1.5x
``fs.get`` on the small chunks.

Run: ``.venv/bin/python benchmarks/bench_download.py [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench_s3rig import build, fs_get, obstore_get, run_row, seq_cat
from s3server import S3Rig


def ours(
    rig: S3Rig,
    bucket: str,
    keys: list[str],
    out: Path,
    client: Any,
    engine: str | None = None,
    verify: bool = True,
) -> None:
    from zarr_dask_utils import parallel_download

    name = keys[0].split("/")[1]
    report = parallel_download(
        f"s3://{bucket}/store.zarr",
        out / "store.zarr",
        arrays=[name],
        storage_options={**rig.storage_options, **({"zdu_engine": engine} if engine else {})},
        client=client,
        verify=verify,
        progress=False,
    )
    if not report.complete:
        raise RuntimeError(str(report))
    ours.last = report.to_dict()  # type: ignore[attr-defined]


def collect_closed_clients() -> None:
    """Free the plain clients' s3fs filesystems now, in the main thread (no event loop runs here).

    ``seq_cat`` and ``fs_get`` make synchronous ``S3FileSystem`` instances
    (``skip_instance_cache=True``) that sit in reference cycles, so the cyclic garbage collector
    frees them some time later.  s3fs's finalizer (``S3FileSystem.close_session``) closes the
    aiobotocore client on whatever event loop is *running in the collecting thread*, not on
    the filesystem's own (fsspec's IO thread).  When that collection happened to run on zarr's
    event loop during the next row (``parallel_download, s3fs``), aiohttp's connector was closed
    on the wrong loop: "Task exception was never retrieved ... got Future ... attached to a
    different loop".  Collected here, with no loop running in this thread, s3fs closes the
    session on its own loop.  (Reproduced on the rig in isolation: a sync ``S3FileSystem``
    with open connections, ``gc.collect()`` inside a coroutine on zarr's loop prints the
    message; ``gc.collect()`` in the main thread first does not.)
    """
    gc.collect()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000, help="57 KiB chunks")
    parser.add_argument("--large", type=int, default=40, help="14 MB chunks")
    parser.add_argument("--quick", action="store_true", help="300 small and 6 large chunks")
    parser.add_argument("--servers", type=int, default=4, help="moto processes")
    parser.add_argument("--threads", type=int, default=2, help="Dask threads for ours")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.small, args.large = 300, 6
    from distributed import Client, LocalCluster

    rig = S3Rig(latency=0.020, jitter=0.002, servers=args.servers)
    results: dict[str, list[dict[str, Any]]] = {}
    with (
        rig,
        LocalCluster(
            n_workers=1,
            threads_per_worker=args.threads,
            processes=False,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        bucket = rig.make_bucket("zdu-bench-download")
        expected = build(rig, bucket, args.small, args.large)
        collect_closed_clients()
        cases: list[tuple[str, Any, dict[str, Any]]] = [
            ("s3fs cat_file, sequential", seq_cat, {}),
            ("s3fs get(recursive=True)", fs_get, {}),
        ]
        try:
            import obstore  # noqa: F401

            cases.append(("obstore, 64 in flight", obstore_get, {"n": 64}))
        except ImportError:
            print("obstore not installed: its rows are skipped")
        cases.append(("parallel_download, s3fs", ours, {"client": client, "engine": "s3fs"}))
        cases.append(("parallel_download (auto)", ours, {"client": client}))
        # what verification (read-back compare + hash of every object) costs
        cases.append(("parallel_download, no verify", ours, {"client": client, "verify": False}))
        for name in ("small", "large"):
            keys = sorted(k for k in expected if k.startswith(f"store.zarr/{name}/"))
            rows = []
            for label, fn, kw in cases:
                row = run_row(
                    rig,
                    label,
                    lambda out, f=fn, kw=kw, k=keys: f(rig, bucket, k, out, **kw),
                    keys,
                    expected,
                )
                if fn is ours:
                    row["report"] = {
                        k: ours.last[k]  # type: ignore[attr-defined]
                        for k in (
                            "objects_copied",
                            "objects_verified",
                            "tasks",
                            "seconds",
                            "transfer_engine",
                        )
                    }
                rows.append(row)
                collect_closed_clients()  # outside the timing
                print(json.dumps(row), file=sys.stderr, flush=True)  # each row as it ends
            results[name] = rows
    settings = {"servers": args.servers, "latency_ms": 20, "jitter_ms": 2, "threads": args.threads}
    settings["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps({"settings": settings, "results": results}, indent=2))
    else:
        print_ratios(settings, results)
    return 0 if all(r["identical"] for rows in results.values() for r in rows) else 1


def print_ratios(settings: dict[str, Any], results: dict[str, list[dict[str, Any]]]) -> None:
    """One table per store: rate, requests, ratio to sequential and to fs.get, load."""
    print(f"rig: {settings}")
    for name, rows in results.items():
        unit = "objects_per_s" if name == "small" else "mb_per_s"
        seq, get = rows[0][unit], rows[1][unit]
        print(f"\n{name}: {rows[0]['objects']} objects ({unit})")
        print(
            f"{'case':28} {'s':>7} {'obj/s':>8} {'MB/s':>7} {'GET':>5} {'HEAD':>5} "
            f"{'x seq':>6} {'x get':>6} {'same':>5} {'load':>5}"
        )
        for r in rows:
            q = r["requests"]
            print(
                f"{r['case']:28} {r['seconds']:7.2f} {r['objects_per_s']:8.1f} "
                f"{r['mb_per_s']:7.1f} {q['GET']:5d} {q['HEAD']:5d} {r[unit] / seq:6.2f} "
                f"{r[unit] / get:6.2f} {'yes' if r['identical'] else 'NO':>5} {r['load1']:5.2f}"
            )
        for r in rows:
            if "report" in r:
                phases = ", ".join(f"{k} {v:.2f}" for k, v in r["report"]["seconds"].items())
                print(f"  {r['case']}: {r['report']['tasks']} tasks; {phases} s")
                print(f"    {r['report']['transfer_engine']}")


if __name__ == "__main__":
    raise SystemExit(main())
