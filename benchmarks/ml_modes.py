"""Which loader mode wins on a training node with few cores (issue 17): ``bench_ml.py --modes``.

The scenario: the training process owns one core (``os.sched_setaffinity``, every thread of
the benchmark process), and the readers run on the other core(s), "next to it":

- ``no workers``: the training process reads, decodes and trains, one core for all;
- ``2 DataLoader workers``: two fork workers, pinned to the other core(s) by a
  ``worker_init_fn`` (the batches come back through shared memory);
- ``client=``: ``to_torch_dataloader(client=)`` on a Dask cluster started from the ``dask``
  command line (scheduler + 2 single-thread workers) with its processes pinned to the other
  core(s), like a cluster beside the node (scheduler included: a ``LocalCluster`` would run
  its scheduler inside the training process); decoded batches come back over TCP.

Each mode runs without a training step and with a simulated step of ``--step-ms`` ms: 256 x 256
float32 matmuls on one torch thread, their count calibrated once (CPU time) and printed.  Each
loader is built once and warmed by one untimed epoch (DataLoader workers are persistent, the
cluster long-lived), then measured as interleaved repeats (A B C A B C ...).  Per run: samples/s,
the training process's CPU per batch besides the step (what loading costs the training core),
the CPU per batch the readers spent on the other core, and the step's own CPU per batch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import psutil

from zarr_dask_utils.ml import to_torch_dataloader

MODES = ("no workers", "2 DataLoader workers", "client=")


def pin(cpus: set[int]) -> None:
    """Pin every thread of this process to *cpus* (affinity is per thread on Linux)."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)


def split_cores() -> tuple[set[int], set[int]]:
    """The training core and the readers' cores."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("--modes needs at least 2 cores (one to train, the rest to read)")
    return {cores[0]}, set(cores[1:])


class TrainStep:
    """A CPU-bound training step of about *ms* CPU milliseconds on one torch thread."""

    def __init__(self, ms: float) -> None:
        import torch

        torch.set_num_threads(1)
        gen = torch.Generator().manual_seed(0)
        self.a = torch.randn(256, 256, generator=gen)
        self.b = torch.randn(256, 256, generator=gen)
        for _ in range(5):  # warm up
            self.a @ self.b
        start, count = time.thread_time(), 0
        while time.thread_time() - start < 0.3:
            self.a @ self.b
            count += 1
        self.matmul_ms = (time.thread_time() - start) * 1000 / count
        self.reps = round(ms / self.matmul_ms) if ms > 0 else 0
        self.ms = self.reps * self.matmul_ms

    def __call__(self, batch: Any) -> float:
        out = float(batch.float().mean())  # use the batch, as a model would
        for _ in range(self.reps):
            out += float((self.a @ self.b)[0, 0])
        return out


class PinnedCluster:
    """A Dask scheduler and *workers* 1-thread workers from the CLI, pinned to *cpus*."""

    def __init__(self, cpus: set[int], workers: int = 2) -> None:
        from distributed import Client

        self.tmp = tempfile.mkdtemp(prefix="zdu-bench-ml-")
        sched_file = os.path.join(self.tmp, "scheduler.json")
        dask = shutil.which("dask") or os.path.join(os.path.dirname(sys.executable), "dask")

        def start(*args: str) -> subprocess.Popen[bytes]:
            log = open(os.path.join(self.tmp, f"{args[0]}.log"), "wb")  # noqa: SIM115
            return subprocess.Popen(
                [dask, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: os.sched_setaffinity(0, cpus),
            )

        common = ("--scheduler-file", sched_file, "--no-dashboard")
        self.procs = [start("scheduler", "--host", "127.0.0.1", "--port", "0", *common)]
        deadline = time.monotonic() + 60
        while not os.path.exists(sched_file) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.procs.append(
            start(
                "worker",
                "--nworkers",
                str(workers),
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                *common,
            )
        )
        self.client = Client(scheduler_file=sched_file)
        self.client.wait_for_workers(workers, timeout=120)
        self.affinity = sorted(
            {tuple(sorted(v)) for v in self.client.run(lambda: os.sched_getaffinity(0)).values()}
        )

    def pids(self) -> set[int]:
        """Every process of the cluster."""
        out = set()
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(proc.pid)
                out |= {p.pid, *(c.pid for c in p.children(recursive=True))}
        return out

    def close(self, keep_logs: bool = False) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if keep_logs:
            print(f"  cluster logs kept in {self.tmp}", flush=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def cpu_of(pids: Iterable[int]) -> float:
    """CPU seconds (user + system) of the live processes *pids*."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


def reader_pids(mode: str, cluster: PinnedCluster, loader: Any) -> set[int]:
    """The processes that read for *mode* (none for ``no workers``)."""
    if mode == "client=":
        return cluster.pids()
    iterator = getattr(loader, "_iterator", None)  # persistent workers: alive after warm-up
    return {w.pid for w in getattr(iterator, "_workers", [])}


def make_loader(
    mode: str,
    url: str,
    options: dict[str, Any] | None,
    batch: int,
    cluster: PinnedCluster,
    other: set[int],
) -> Any:
    common: dict[str, Any] = {
        "sample_dim": "time",
        "variables": "t2m",
        "batch_size": batch,
        "storage_options": options,
    }
    if mode == "client=":
        return to_torch_dataloader(url, buffer_chunks=4, client=cluster.client, **common)
    workers = 2 if mode.startswith("2") else 0
    loader = to_torch_dataloader(
        url,
        buffer_chunks=4,
        num_workers=workers,
        multiprocessing_context="fork" if workers else None,
        **common,
    )
    if workers:
        loader.worker_init_fn = lambda _i: pin(other)  # fork: a closure is fine
    return loader


def one_run(
    loader: Any, step: Callable[[Any], float] | None, epochs: int, readers: set[int]
) -> dict[str, float]:
    """Iterate *epochs* epochs, training on each batch: rate and CPU split."""
    wall0, cpu0, other0 = time.perf_counter(), time.process_time(), cpu_of(readers)
    step_cpu, samples, batches = 0.0, 0, 0
    for _ in range(epochs):
        for batch in loader:
            samples += len(batch)
            batches += 1
            if step is not None:
                t = time.thread_time()
                step(batch)
                step_cpu += time.thread_time() - t
    wall = time.perf_counter() - wall0
    train_cpu = time.process_time() - cpu0
    return {
        "samples_per_s": samples / wall,
        "load_cpu_ms": (train_cpu - step_cpu) * 1000 / batches,
        "reader_cpu_ms": (cpu_of(readers) - other0) * 1000 / batches,
        "step_cpu_ms": step_cpu * 1000 / batches,
    }


def run_modes(
    url: str,
    options: dict[str, Any] | None,
    batch: int,
    step_ms: list[float],
    repeats: int,
    epochs: int,
    cores: tuple[set[int], set[int]],
) -> list[dict[str, Any]]:
    """The mode section: every mode at step 0 and each *step_ms*, interleaved repeats."""
    train, other = cores
    # torch warns that 2 workers exceed the 1 core this process may use: intended here
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    pin(train)  # bench_ml.py pinned already, before anything started; threads since too
    steps = {0.0: None, **{ms: TrainStep(ms) for ms in step_ms if ms > 0}}
    for ms, st in steps.items():
        if st is not None:
            print(
                f"  step {ms:g} ms: {st.reps} matmuls 256x256 of {st.matmul_ms:.3f} ms CPU "
                f"= {st.ms:.1f} ms",
                flush=True,
            )
    cluster = PinnedCluster(other)
    print(
        f"  training process on core(s) {sorted(train)}; readers on {sorted(other)} "
        f"(Dask processes: {cluster.affinity})",
        flush=True,
    )
    try:
        loaders = {m: make_loader(m, url, options, batch, cluster, other) for m in MODES}
        for loader in loaders.values():  # warm-up epoch: worker start-up, imports
            one_run(loader, None, 1, set())
        dl_workers = reader_pids(MODES[1], cluster, loaders[MODES[1]])
        kids = [psutil.Process(p).cpu_affinity() for p in sorted(dl_workers)]
        print(f"  DataLoader worker affinity: {kids}", flush=True)
        rows: list[dict[str, Any]] = []
        for r in range(repeats):
            load = os.getloadavg()[0]
            for ms, st in steps.items():
                for mode in MODES:
                    if mode == "client=":  # a worker lost under load comes back (nanny)
                        cluster.client.wait_for_workers(2, timeout=120)
                    res = one_run(
                        loaders[mode], st, epochs, reader_pids(mode, cluster, loaders[mode])
                    )
                    rows.append({"mode": mode, "step_ms": ms, "repeat": r, "load": load, **res})
                    print(
                        f"  r{r} step {ms:>4g} ms  {mode:<21} {res['samples_per_s']:>7.0f}/s  "
                        f"train-core load CPU {res['load_cpu_ms']:>5.1f} ms/batch  "
                        f"reader CPU {res['reader_cpu_ms']:>5.1f} ms/batch  "
                        f"step {res['step_cpu_ms']:>5.1f} ms"
                        f"  (load {load:.1f})",
                        flush=True,
                    )
        summary(rows, batch, len(other))
        return rows
    finally:
        for loader in locals().get("loaders", {}).values():
            if hasattr(loader, "_iterator"):
                loader._iterator = None  # DataLoader: stop its persistent workers now
        cluster.close(keep_logs=sys.exc_info()[0] is not None)


def ceiling(med: dict[str, float], batch: int, reader_cores: int) -> float:
    """samples/s the CPU costs allow with the cores to ourselves (not a wall measurement).

    The training core needs step + loading CPU per batch; the readers need their CPU per
    batch spread over *reader_cores*: the slower side sets the pace.
    """
    train = (med["step_cpu_ms"] + med["load_cpu_ms"]) / 1000
    readers = med["reader_cpu_ms"] / 1000 / reader_cores
    return batch / max(train, readers)


def summary(rows: list[dict[str, Any]], batch: int, reader_cores: int) -> None:
    """Medians over the repeats, the median per-repeat ratio to ``no workers``, the ceiling."""
    print(
        "  mode summary (medians over repeats; ratio = median of per-repeat ratios to no "
        "workers; ceiling = what the CPU per batch allows on idle cores)"
    )
    for ms in sorted({r["step_ms"] for r in rows}):
        base = {
            r["repeat"]: r["samples_per_s"]
            for r in rows
            if r["step_ms"] == ms and r["mode"] == MODES[0]
        }
        base_ceiling = 0.0
        for mode in MODES:
            sel = [r for r in rows if r["step_ms"] == ms and r["mode"] == mode]
            med = {
                k: statistics.median(r[k] for r in sel)
                for k in ("samples_per_s", "load_cpu_ms", "reader_cpu_ms", "step_cpu_ms")
            }
            ratio = statistics.median(r["samples_per_s"] / base[r["repeat"]] for r in sel)
            rates = [r["samples_per_s"] for r in sel]
            top = ceiling(med, batch, reader_cores)
            base_ceiling = base_ceiling or top
            print(
                f"    step {ms:>4g} ms  {mode:<21} {med['samples_per_s']:>7.0f}/s "
                f"({min(rates):.0f}-{max(rates):.0f})  {ratio:>5.2f}x  train-core load CPU "
                f"{med['load_cpu_ms']:.1f} ms/batch  "
                f"reader CPU {med['reader_cpu_ms']:.1f} ms/batch  "
                f"step {med['step_cpu_ms']:.1f} ms/batch  "
                f"ceiling {top:.0f}/s ({top / base_ceiling:.2f}x)",
                flush=True,
            )
