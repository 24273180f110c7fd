"""Mutation check of the test suite: hand-listed mutants of the logic that matters.

Each mutant is one small, concrete behaviour change (an operator flipped, a check dropped, a counter
not added) in the pure planners or a safety-critical module: locks and the fence (``concurrent/``),
credential redaction and the ``storage_options`` refusal (``_core/storage/locations``), chunk-grid
maths, the crc32c/blosc checks, decode counters, integrity classification and the cost model. The
script copies the repository to a temporary directory, applies one mutant at a time *to the copy*
(the working tree is never touched), runs the listed tests there with ``pytest -x -q``
(``PYTHONPATH`` pointing at the copy, so Dask's worker processes import the mutated package too) and
reports which mutants the tests killed.

A mutant *survives* when its tests still pass: either a test is missing, or the mutant is
*equivalent* (no observable change).  Equivalent mutants are listed with the reason and not
run; they do not count in the kill rate.

Run on demand, not in CI (about 20 minutes on 2 cores)::

    make mutate                                 # every mutant
    .venv/bin/python scripts/mutate.py --list   # the table
    .venv/bin/python scripts/mutate.py --only lock-timeout-leaks sample-size-floor
    .venv/bin/python scripts/mutate.py --package-rev HEAD   # mutate the committed package
    .venv/bin/python scripts/mutate.py --only sample-size-floor --tests tests/x.py::test_y

Why not mutmut or cosmic-ray: both install here, but they generate every operator mutant of
every function (hundreds for these modules, each a run of cluster tests), and mutmut maps
tests to mutants by tracing calls in the test process, which misses code that only runs in
Dask worker processes (decoding, locks on workers).  A short table of mutants that each alter
what a user sees keeps the run within minutes and every survivor meaningful.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "zarr_dask_utils"
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache",
    ".ruff_cache", "*.egg-info", "notebooks", "benchmarks", "deploy", "mutants",
)  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    """One behaviour change: replace *old* (must occur exactly once) by *new* in *module*."""

    name: str
    module: str  # relative to the package
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions
    breaks: str  # what a user would see
    equivalent: str | None = None  # why it cannot be observed (then it is not run)


PURE_CONCURRENT = ("tests/test_concurrent_pure.py",)
LOCKS = ("tests/test_concurrent_dask.py", "-k", "lock")
FENCE = ("tests/test_concurrent_store.py", "tests/test_concurrent_races.py")
LOCATIONS = ("tests/test_core_locations.py",)
META = ("tests/test_metadata_pure.py", "tests/test_metadata_stores.py")
INTEGRITY_PURE = ("tests/test_integrity_pure.py",)
DIRECT = ("tests/test_integrity_direct.py",)
INTEGRITY = (
    "tests/test_integrity_pure.py",
    "tests/test_integrity_direct.py",
    "tests/test_integrity_stores.py",
)
OPTIMIZE = ("tests/test_optimize_pure.py",)

MUTANTS: tuple[Mutant, ...] = (
    # --- the 12 behaviour changes of issue 19 ------------------------------------------------
    Mutant(
        "lock-timeout-leaks",
        "concurrent/lock.py",
        "                _stop_refresh(lock)\n                self.release()\n",
        "                _stop_refresh(lock)\n",
        LOCKS,
        "a multi-name lock timing out on its second name keeps the first until the client exits",
    ),
    Mutant(
        "lock-acquire-timeout-ignored",
        "concurrent/lock.py",
        'limit = self.timeout if timeout is None else parse_timedelta(timeout, "s")',
        "limit = self.timeout",
        LOCKS,
        "acquire(timeout=0.3) waits for the constructor's timeout instead",
    ),
    Mutant(
        "consolidated-ignores-attributes",
        "_core/checks/consolidated_state.py",
        '        doc = {k: v for k, v in doc.items() if k != "consolidated_metadata"}\n'
        "    return json.dumps(",
        '        doc = {k: v for k, v in doc.items() if k not in ("consolidated_metadata", '
        '"attributes")}\n    return json.dumps(',
        META,
        "consolidated metadata stale only in attributes is reported current",
    ),
    Mutant(
        "repair-ignores-order",
        "metadata/plan.py",
        'needed, reason = diff.stale or order_wrong, "stale or out of order"',
        'needed, reason = diff.stale, "stale or out of order"',
        META,
        "unsorted consolidated entries (zarr-python #4226) are left unrepaired",
    ),
    Mutant(
        "merge-drops-missing",
        "_core/decoding/pipeline_decoder.py",
        "        self.missing += other.missing\n",
        "",
        INTEGRITY,
        "verify_chunks reports 0 missing chunks after a deletion",
    ),
    Mutant(
        "pipeline-missing-not-counted",
        "_core/decoding/pipeline_decoder.py",
        '        if status == "missing":\n            result.missing += 1\n',
        '        if status == "missing":\n            pass\n',
        INTEGRITY,
        "a deleted chunk of a transposed (pipeline) array is not counted",
    ),
    Mutant(
        "direct-missing-not-counted",
        "_core/decoding/direct_decoder.py",
        "        if raw is None:\n            result.missing += 1\n",
        "        if raw is None:\n            pass\n",
        INTEGRITY,
        "a deleted chunk of a plain (direct) array is not counted",
    ),
    Mutant(
        "direct-oversized-accepted",
        "_core/decoding/direct_decoder.py",
        "if flat.nbytes != self.chain.nbytes:",
        "if flat.nbytes < self.chain.nbytes:",
        DIRECT,
        "a chunk decoding to too many bytes passes the deep scan",
    ),
    Mutant(
        "pipeline-blosc-appended-accepted",
        "_core/decoding/pipeline_decoder.py",
        "if head and (announced := _blosc_length(head)) != size:",
        "if head and (announced := _blosc_length(head)) > size:",
        INTEGRITY,
        "a blosc object with bytes appended passes on the pipeline path",
    ),
    Mutant(
        "two-stage-with-trivial-intermediate",
        "optimize/plan.py",
        "if allow_two_stage and direct > amplification_limit and inter not in (read, write):",
        "if allow_two_stage and direct > amplification_limit:",
        OPTIMIZE,
        "a rechunk copies everything twice through an intermediate equal to read/write chunks",
    ),
    Mutant(
        "write-unit-at-max-mem-refused",
        "optimize/plan.py",
        "    if unit_bytes > max_mem:",
        "    if unit_bytes >= max_mem:",
        OPTIMIZE,
        "a target chunk of exactly max_mem bytes is refused",
    ),
    Mutant(
        "miss-probability-zero-at-boundary",
        "integrity/plan.py",
        "    if n_sampled > n_total - n_bad:",
        "    if n_sampled >= n_total - n_bad:",
        INTEGRITY_PURE,
        "a sample as large as the good chunks claims it cannot have missed the bad ones",
    ),
    Mutant(
        "sample-size-floor",
        "integrity/plan.py",
        "math.ceil(sample_rate * n_total)",
        "math.floor(sample_rate * n_total)",
        INTEGRITY_PURE,
        "verify_chunks samples fewer chunks than the rate asks for",
    ),
    Mutant(
        "shard-end-past-object-accepted",
        "_core/decoding/direct_decoder.py",
        "            if offset + length > len(raw):",
        "            if offset > len(raw):",
        DIRECT,
        "a truncated shard is reported as a checksum error of its last chunk, not truncation",
    ),
    # --- region -> storage key planning --------------------------------------------------------
    Mutant(
        "block-range-drops-last",
        "concurrent/regions.py",
        "return range(start // block, (stop - 1) // block + 1)",
        "return range(start // block, stop // block)",
        PURE_CONCURRENT,
        "a region write does not lock the last chunk it touches",
    ),
    Mutant(
        "covers-any-edge",
        "concurrent/regions.py",
        "if s.start > lo or s.stop < hi:",
        "if s.start > lo and s.stop < hi:",
        PURE_CONCURRENT,
        "partly covered chunks are written without a lock",
    ),
    Mutant(
        "full-and-partial-swapped",
        "concurrent/regions.py",
        "(full if _covers(region, index, shape, grid) else partial).append(key)",
        "(partial if _covers(region, index, shape, grid) else full).append(key)",
        PURE_CONCURRENT,
        "locks are taken for the wrong keys",
    ),
    Mutant(
        "empty-region-accepted",
        "concurrent/regions.py",
        "if not 0 <= start < stop <= size:",
        "if not 0 <= start <= stop <= size:",
        PURE_CONCURRENT,
        "an empty region is accepted instead of refused",
    ),
    Mutant(
        "negative-start-off-by-one",
        "concurrent/regions.py",
        "start = start + size if start < 0 else start",
        "start = start + size if start <= 0 else start",
        PURE_CONCURRENT,
        "a region starting at 0 is refused",
    ),
    Mutant(
        "array-end-edge-misaligned",
        "concurrent/regions.py",
        "(lo % b == 0 or lo == size) and (hi % b == 0 or hi == size)",
        "(lo % b == 0 or lo == size) and (hi % b == 0)",
        PURE_CONCURRENT,
        "blocks ending at the array's clipped edge are reported misaligned",
    ),
    Mutant(
        "shared-keys-need-three-writers",
        "concurrent/regions.py",
        "if n > 1))",
        "if n > 2))",
        PURE_CONCURRENT,
        "a chunk written by two Dask blocks is not reported as shared (lost updates)",
    ),
    # --- lock names and their order --------------------------------------------------------------
    Mutant(
        "lock-names-reverse-order",
        "concurrent/regions.py",
        "return tuple(sorted({lock_name(url, k) for k in keys}))",
        "return tuple(sorted({lock_name(url, k) for k in keys}, reverse=True))",
        PURE_CONCURRENT,
        "lock names not in the documented ascending order",
    ),
    Mutant(
        "lock-names-unsorted",
        "concurrent/lock.py",
        "return tuple(sorted(set(names)))",
        "return tuple(names)",
        LOCKS,
        "two DistributedLocks over the same names in different order can deadlock",
    ),
    Mutant(
        "lock-reentry-allowed",
        "concurrent/lock.py",
        "        if self._held:\n            raise RuntimeError(",
        "        if False:\n            raise RuntimeError(",
        LOCKS,
        "acquiring a held lock object again silently nests",
    ),
    Mutant(
        "lock-release-forward-order",
        "concurrent/lock.py",
        "lock = self._held.pop()",
        "lock = self._held.pop(0)",
        LOCKS,
        "locks released first-taken first",
        equivalent="release order cannot deadlock (releasing never waits) and all are released",
    ),
    # --- the fence ------------------------------------------------------------------------------
    Mutant(
        "fence-set-unchecked",
        "concurrent/fence.py",
        "                raise self._conflict(key, expected, found)\n"
        "        await self.store.set(key, value)",
        "                pass\n        await self.store.set(key, value)",
        FENCE,
        "a write after another writer's change silently drops that update",
    ),
    Mutant(
        "fence-delete-unchecked",
        "concurrent/fence.py",
        "                raise self._conflict(key, expected, found)\n"
        "        await self.store.delete(key)",
        "                pass\n        await self.store.delete(key)",
        FENCE,
        "a delete after another writer's change drops that update",
    ),
    Mutant(
        "fence-s3-unconditional",
        "concurrent/fence.py",
        'match = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}',
        "match = {}",
        FENCE,
        "S3 writes are no longer conditional (If-Match)",
    ),
    # --- credential redaction and the storage_options refusal -----------------------------------
    Mutant(
        "redact-nothing",
        "_core/storage/locations.py",
        'return _CREDENTIALS_IN_URL.sub(r"\\g<proto>***@", url)',
        "return url",
        LOCATIONS,
        "passwords in URLs appear in messages, logs and reports",
    ),
    Mutant(
        "display-unredacted",
        "_core/storage/locations.py",
        "        url = redact(self.url)\n",
        "        url = self.url\n",
        LOCATIONS,
        "Location.display shows credentials",
    ),
    Mutant(
        "storage-options-silently-ignored",
        "_core/storage/locations.py",
        "    def _no_options(what: str) -> None:\n        if options:",
        "    def _no_options(what: str) -> None:\n        if False:",
        LOCATIONS,
        "storage_options given for a local path are silently ignored",
    ),
    # --- chunk-grid maths -----------------------------------------------------------------------
    Mutant(
        "grid-floor",
        "_core/pure/chunkgrid.py",
        "math.ceil(s / c) for s, c in zip(shape, chunks, strict=True)",
        "s // c for s, c in zip(shape, chunks, strict=True)",
        INTEGRITY_PURE,
        "edge chunks are outside the grid: never scanned, reported as strays",
    ),
    Mutant(
        "coords-wrong-axis-order",
        "_core/pure/chunkgrid.py",
        "        for g in reversed(self.grid):",
        "        for g in self.grid:",
        INTEGRITY_PURE,
        "batches name the wrong chunk keys on non-square grids",
    ),
    Mutant(
        "in-grid-inclusive",
        "_core/pure/chunkgrid.py",
        "return all(0 <= c < g for c, g in zip(coords, self.grid, strict=True))",
        "return all(0 <= c <= g for c, g in zip(coords, self.grid, strict=True))",
        INTEGRITY_PURE,
        "a chunk one past the grid (shape shrunk) is not reported",
    ),
    Mutant(
        "region-not-clipped",
        "_core/pure/chunkgrid.py",
        "slice(c * n, min((c + 1) * n, s))",
        "slice(c * n, (c + 1) * n)",
        ("tests/test_integrity_pure.py", "tests/test_integrity_direct.py"),
        "value statistics include the fill beyond the array's edge",
    ),
    Mutant(
        "v3-default-separator-dot",
        "_core/pure/chunkgrid.py",
        'or ("/" if is_default else ".")',
        'or "."',
        INTEGRITY_PURE,
        "every chunk of a v3 array without an explicit separator looks like junk",
    ),
    # --- crc32c / blosc checks on the direct path ----------------------------------------------
    Mutant(
        "crc32c-unchecked",
        "_core/decoding/direct_decoder.py",
        "    if computed != stored:",
        "    if False:",
        DIRECT,
        "a flipped byte under a crc32c codec passes",
    ),
    Mutant(
        "crc32c-not-stripped",
        "_core/decoding/direct_decoder.py",
        "    return inner\n",
        "    return view\n",
        DIRECT,
        "every crc32c chunk is reported as the wrong size",
    ),
    Mutant(
        "blosc-truncation-only",
        "_core/decoding/direct_decoder.py",
        "        if announced != size:",
        "        if announced > size:",
        DIRECT,
        "a blosc chunk with bytes appended passes on the direct path",
    ),
    Mutant(
        "shard-index-without-crc",
        "_core/decoding/direct_decoder.py",
        "size = 16 * n + (4 if layout.index_crc else 0)",
        "size = 16 * n",
        DIRECT,
        "every shard with a checksummed index fails",
    ),
    # --- integrity classification ---------------------------------------------------------------
    Mutant(
        "checksum-error-misclassified",
        "_core/decoding/classify.py",
        '    ("checksum", "chunk-checksum-mismatch"),',
        '    ("checksum", "chunk-decode-error"),',
        INTEGRITY_PURE,
        "checksum failures are reported as generic decode errors",
    ),
    Mutant(
        "zero-byte-not-classified",
        "_core/pure/inventory.py",
        "    if size == 0:\n        arr.lists",
        "    if size == -1:\n        arr.lists",
        INTEGRITY_PURE,
        "empty chunk objects are not reported as chunk-zero-bytes",
    ),
    Mutant(
        "out-of-grid-not-classified",
        "_core/pure/inventory.py",
        "    if not arr.grid.in_grid(coords):",
        "    if False:",
        INTEGRITY_PURE,
        "chunks left outside a shrunk shape are not reported",
    ),
    # --- cost-model counts ----------------------------------------------------------------------
    Mutant(
        "axis-touched-off-by-one",
        "_core/pure/cost_model.py",
        "return first, (hi - 1) // chunk - first + 1",
        "return first, hi // chunk - first + 1",
        OPTIMIZE,
        "selections ending on a chunk boundary count one chunk too many",
    ),
    Mutant(
        "shard-requests-ignore-full-shards",
        "_core/pure/cost_model.py",
        "requests = n_shards + (touched - in_full)",
        "requests = n_shards + touched",
        OPTIMIZE,
        "whole-shard reads are costed as one request per inner chunk",
    ),
    Mutant(
        "full-shard-any-touch",
        "_core/pure/cost_model.py",
        "full = sum(t for t in by_shard.values() if t == per)",
        "full = sum(t for t in by_shard.values() if t > 0)",
        OPTIMIZE,
        "partly read shards are costed as whole-shard reads",
    ),
    Mutant(
        "request-waves-floor",
        "_core/pure/cost_model.py",
        "waves = math.ceil(self.requests / max(params.concurrency, 1))",
        "waves = self.requests // max(params.concurrency, 1)",
        OPTIMIZE,
        "fewer requests than the concurrency are predicted to take no latency",
    ),
)


@dataclass
class Outcome:
    """What happened to one mutant."""

    mutant: Mutant
    status: str  # killed | survived | equivalent | stale | baseline-failed | error
    seconds: float = 0.0
    detail: str = ""


def _copy_tree(dest: Path, package_rev: str | None) -> None:
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE, symlinks=True)
    if package_rev:
        shutil.rmtree(dest / PACKAGE)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", package_rev, PACKAGE],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(copy), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _check_import(copy: Path) -> None:
    code = f"import {PACKAGE}; print({PACKAGE}.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=_env(copy), capture_output=True, text=True
    )
    if out.returncode != 0 or not out.stdout.strip().startswith(str(copy)):
        sys.exit(
            f"The copy at {copy} does not import as {PACKAGE} (got {out.stdout.strip()!r}, "
            f"{out.stderr.strip()[-500:]}); cannot test mutants."
        )


def _pytest(copy: Path, tests: Sequence[str], timeout: float) -> tuple[int | None, str]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        out = subprocess.run(
            cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return out.returncode, (failed[0] if failed else (lines[-1] if lines else out.stderr[-300:]))


def _run_one(
    mutant: Mutant, copy: Path, timeout: float, baseline: dict[tuple[str, ...], bool]
) -> Outcome:
    if mutant.equivalent:
        return Outcome(mutant, "equivalent", detail=mutant.equivalent)
    path = copy / PACKAGE / mutant.module
    original = path.read_text()
    count = original.count(mutant.old)
    if count != 1:
        return Outcome(mutant, "stale", detail=f"snippet found {count} times: update the table")
    if baseline.get(mutant.tests) is False:
        return Outcome(mutant, "baseline-failed", detail="its tests fail without the mutant")
    start = time.monotonic()
    path.write_text(original.replace(mutant.old, mutant.new))
    try:
        code, detail = _pytest(copy, mutant.tests, timeout)
    finally:
        path.write_text(original)
    seconds = time.monotonic() - start
    if code is None or code in (1, 2, 3):  # failures, collection errors, timeouts kill
        return Outcome(mutant, "killed", seconds, detail)
    if code == 0:
        return Outcome(mutant, "survived", seconds, detail)
    return Outcome(mutant, "error", seconds, f"pytest exit {code}: {detail}")


def _baseline(copy: Path, mutants: Sequence[Mutant], timeout: float) -> dict[tuple[str, ...], bool]:
    results: dict[tuple[str, ...], bool] = {}
    for tests in dict.fromkeys(m.tests for m in mutants if not m.equivalent):
        code, detail = _pytest(copy, tests, timeout)
        results[tests] = code == 0
        state = "ok" if code == 0 else f"FAILS ({detail})"
        print(f"baseline {' '.join(tests)}: {state}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mutants; print each outcome and the kill rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutants only")
    parser.add_argument("--list", action="store_true", help="print the table and exit")
    parser.add_argument("--package-rev", help="mutate the package as of this git revision")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument(
        "--tests", nargs="+", metavar="ARG", help="pytest arguments instead of the table's"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run")
    parser.add_argument("--fail-under", type=float, default=90.0, help="minimum kill rate (%%)")
    args = parser.parse_args(argv)

    mutants = MUTANTS
    if args.only:
        unknown = set(args.only) - {m.name for m in MUTANTS}
        if unknown:
            parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
        mutants = tuple(m for m in MUTANTS if m.name in args.only)
    if args.tests:  # does this test catch that mutant?
        mutants = tuple(replace(m, tests=tuple(args.tests)) for m in mutants)
    if args.list:
        for m in mutants:
            mark = f"  [equivalent: {m.equivalent}]" if m.equivalent else ""
            print(f"{m.name:38} {m.module:26} {m.breaks}{mark}")
        return 0

    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="zdu-mutate-") as tmp:
        copy = Path(tmp) / "repo"
        _copy_tree(copy, args.package_rev)
        _check_import(copy)
        baseline = {} if args.no_baseline else _baseline(copy, mutants, args.timeout)
        for m in mutants:
            outcome = _run_one(m, copy, args.timeout, baseline)
            outcomes.append(outcome)
            print(
                f"{outcome.status.upper():15} {m.name:38} {outcome.seconds:6.1f} s  "
                f"{outcome.detail[:110]}",
                flush=True,
            )

    counted = [o for o in outcomes if o.status in ("killed", "survived")]
    killed = sum(o.status == "killed" for o in counted)
    rate = 100.0 * killed / len(counted) if counted else 0.0
    others = {s: sum(o.status == s for o in outcomes) for s in ("equivalent", "stale", "error")}
    others["baseline-failed"] = sum(o.status == "baseline-failed" for o in outcomes)
    print(
        f"\n{killed} of {len(counted)} non-equivalent mutants killed: {rate:.1f} % "
        f"(" + ", ".join(f"{n} {s}" for s, n in others.items()) + ")"
    )
    for o in outcomes:
        if o.status == "survived":
            print(f"  survived: {o.mutant.name} ({o.mutant.module}): {o.mutant.breaks}")
    if others["stale"] or others["error"] or others["baseline-failed"]:
        return 2
    return 0 if rate >= args.fail_under else 1


if __name__ == "__main__":
    sys.exit(main())
