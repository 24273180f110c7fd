"""deploy/ recipes, executed: batch scripts, dask-jobqueue, docker-compose and Kubernetes.

Nothing here needs Slurm, PBS, Docker or Kubernetes: the batch scripts run with ``ZDU_LOCAL=1``
(workers as local processes), the jobqueue recipe submits to a stand-in ``sbatch`` that runs
the job script on this machine, the compose file runs as local processes
(``deploy/compose_local.py``), and the manifests are checked against the schemas that ship in
packages (compose-spec in check-jsonschema, Kubernetes in kubernetes-validate, the Dask
operator's CRD from dask-kubernetes). Every process a recipe starts carries a marker in its
environment, so that the tests can prove none is left behind.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import dask_jobqueue  # noqa: F401  # extra deploy, part of [all]: a missing install fails here
import kubernetes_validate  # noqa: F401  # (the recipes under test import them)
import psutil
import pytest
import yaml

from zarr_dask_utils.testing import build_demo_store, build_sample_hierarchy
from zarr_dask_utils.testing import deploy as deploy_steps

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


jobqueue_cluster = _module(DEPLOY / "jobqueue_cluster.py")
compose_local = _module(DEPLOY / "compose_local.py")
k8s_validate = _module(DEPLOY / "kubernetes" / "validate.py")


def _marked_env(**extra: str) -> tuple[dict[str, str], str]:
    marker = uuid.uuid4().hex
    env = {
        **os.environ,
        "ZDU_DEPLOY_TEST": marker,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    env.update(extra)
    return env, marker


def _leftovers(marker: str, wait: float = 20.0) -> list[str]:
    """Processes still carrying ``marker`` after up to ``wait`` s; kills them (and says so)."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("ZDU_DEPLOY_TEST") == marker:
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    described = []
    for proc in found:
        try:
            described.append(" ".join(proc.cmdline())[:200])
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    return described


# --- dask-jobqueue ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("walltime", "lifetime", "stagger"),
    [
        ("01:00:00", 3300, 240),  # dask-jobqueue's documented example: 55m, 4m
        ("1-00:00:00", 86100, 240),
        ("00:10:00", 450, 120),  # short jobs keep lifetime + stagger under the walltime
        ("02:00", 90, 24),
    ],
    ids=["1h", "1day", "10min", "mm:ss"],
)
def test_lifetime_leaves_room_before_the_walltime(walltime: str, lifetime: int, stagger: int):
    args = jobqueue_cluster.lifetime_args(walltime)
    assert args == ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]
    assert lifetime + stagger < jobqueue_cluster.parse_walltime(walltime)


@pytest.mark.parametrize("walltime", ["00:01:00", "1:2:3:4", "-1:00"])
def test_lifetime_rejects_unusable_walltimes(walltime: str):
    with pytest.raises(ValueError, match="walltime"):
        jobqueue_cluster.lifetime_args(walltime)


@pytest.mark.parametrize(
    ("kind", "directives"),
    [
        (
            "slurm",
            ["#SBATCH -t 02:00:00", "#SBATCH --mem=16G", "#SBATCH --cpus-per-task=8",
             "#SBATCH -A proj", "#SBATCH -p normal"],
        ),
        (
            "pbs",
            ["#PBS -l walltime=02:00:00", "#PBS -l select=1:ncpus=8:mem=16GB", "#PBS -A proj",
             "#PBS -q normal"],
        ),
    ],
)  # fmt: skip
def test_jobqueue_job_script(kind: str, directives: list[str]):
    with jobqueue_cluster.make_cluster(
        kind,
        cores=8,
        processes=2,
        memory="16GiB",
        walltime="02:00:00",
        queue="normal",
        account="proj",
        python="/shared/envs/zdu/bin/python",
        scheduler_host="127.0.0.1",
    ) as cluster:
        script = cluster.job_script()
    lines = script.splitlines()
    for directive in directives:
        assert directive in lines, script
    command = lines[-1].split()
    assert command[:3] == ["/shared/envs/zdu/bin/python", "-m", "distributed.cli.dask_worker"]
    assert command[3].startswith("tcp://127.0.0.1:")
    text = " ".join(command)
    assert "--nthreads 4 --memory-limit 8.00GiB --nworkers 2" in text
    assert "--lifetime 6900s --lifetime-stagger 240s" in text


def test_jobqueue_rejects_an_unknown_batch_system():
    with pytest.raises(ValueError, match="unknown batch system 'lsf'"):
        jobqueue_cluster.make_cluster("lsf")


_SBATCH = """#!/bin/bash
# stand-in for sbatch: run the job script on this machine, in a session of its own
set -e
id=$(( $(ls "$STANDIN_DIR" | grep -c '\\.pid$' || true) + 1001 ))
cp "$1" "$STANDIN_DIR/job-$id.sh"
setsid bash "$STANDIN_DIR/job-$id.sh" >"$STANDIN_DIR/job-$id.log" 2>&1 </dev/null &
echo $! >"$STANDIN_DIR/job-$id.pid"
echo "Submitted batch job $id"
"""
_SCANCEL = """#!/bin/bash
for id in "$@"; do kill -TERM -- "-$(cat "$STANDIN_DIR/job-$id.pid")" 2>/dev/null || true; done
"""


@pytest.mark.slow
def test_jobqueue_recipe_runs_zdu_on_submitted_jobs(tmp_path: Path):
    """The recipe end to end: submit a worker job, validate on it, exit 1 for problems."""
    standin = tmp_path / "bin"
    standin.mkdir()
    for name, text in {"sbatch": _SBATCH, "scancel": _SCANCEL}.items():
        (standin / name).write_text(text)
        (standin / name).chmod(0o755)
    store = build_demo_store(tmp_path / "demo.zarr")
    env, marker = _marked_env(STANDIN_DIR=str(standin))
    env["PATH"] = f"{standin}{os.pathsep}{env['PATH']}"
    args = [sys.executable, str(DEPLOY / "jobqueue_cluster.py"), "slurm", store, "--jobs", "1",
            "--cores", "2", "--processes", "1", "--memory", "2GiB", "--walltime", "00:30:00",
            "--interface", "lo", "--local-directory", str(tmp_path / "scratch")]  # fmt: skip
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PROBLEMS FOUND" in done.stdout
    assert "group-document-missing" in done.stdout
    job = (standin / "job-1001.sh").read_text()
    assert "#SBATCH -t 00:30:00" in job
    assert "--lifetime 1500s --lifetime-stagger 240s" in job
    assert _leftovers(marker) == []


def test_jobqueue_print_job_script_command():
    """The README's command: print the job script, submit nothing."""
    env, marker = _marked_env()
    args = [sys.executable, str(DEPLOY / "jobqueue_cluster.py"), "pbs", "--print-job-script",
            "--scheduler-host", "127.0.0.1", "--walltime", "04:00:00"]  # fmt: skip
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "#PBS -l walltime=04:00:00" in done.stdout
    assert "--lifetime 14100s --lifetime-stagger 240s" in done.stdout
    assert _leftovers(marker, wait=0) == []


# --- batch scripts with a scheduler file -----------------------------------------------------


def _batch(script: str, tmp_path: Path, store: str, zdu_args: str = "") -> tuple[int, str, str]:
    env, marker = _marked_env(
        ZDU_LOCAL="1",
        STORE=store,
        ZDU_ARGS=zdu_args,
        ZDU_VENV=str(BIN.parent),
        SCHEDULER_FILE=str(tmp_path / "scheduler.json"),
        REPORT=str(tmp_path / "report.html"),
        N_THREADS="1",
        TMPDIR=str(tmp_path),
    )
    done = subprocess.run(
        ["bash", str(DEPLOY / script)], env=env, capture_output=True, text=True, timeout=180,
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert _leftovers(marker) == []
    return done.returncode, done.stdout, done.stderr


@pytest.mark.slow
@pytest.mark.s3
def test_slurm_batch_script_validates_s3_store(
    tmp_path: Path, s3_bucket: str, s3_storage_options: dict[str, Any]
):
    """Credentials only in the workers' environment; the endpoint as a zdu option."""
    url = f"s3://{s3_bucket}/sample.zarr"
    build_sample_hierarchy(url, storage_options=s3_storage_options)
    endpoint = s3_storage_options["endpoint_url"]
    code, out, err = _batch("slurm-batch.sh", tmp_path, url, f"-o endpoint_url={endpoint}")
    assert code == 0, out + err
    assert "2 worker(s) up" in out
    assert "Metadata validation for" in out
    assert ": OK" in out
    assert "<title>zdu report</title>" in (tmp_path / "report.html").read_text()
    assert not (tmp_path / "scheduler.json").exists()
    assert not list(tmp_path.glob("dask-local.*"))  # its scratch folder is removed


@pytest.mark.slow
def test_pbs_batch_script_exit_code_is_zdus(tmp_path: Path):
    store = build_demo_store(tmp_path / "demo.zarr")
    code, out, err = _batch("pbs-batch.sh", tmp_path, store)
    assert code == 1, out + err
    assert "2 worker(s) up" in out
    assert "consolidated-stale" in out
    assert "done (exit 1)" in out
    assert not (tmp_path / "scheduler.json").exists()


# --- docker-compose --------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec(tmp_path: Path):
    check = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    done = subprocess.run([*check, str(DEPLOY / "docker-compose.yml")], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # the schema bites: a misspelt key in a service is an error
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((DEPLOY / "docker-compose.yml").read_text().replace("restart:", "restrat:"))
    done = subprocess.run([*check, str(broken)], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 1
    assert "'restrat' was unexpected" in done.stdout


def test_compose_services_are_wired_as_the_runner_expects():
    env: dict[str, str] = {"PATH": "/usr/bin"}
    found = compose_local.services(compose_local.load(compose_local.DEFAULT_FILE, env), env)
    assert set(found) == {"s3", "scheduler", "worker-1", "worker-2", "seed", "zdu"}
    port = env["SCHEDULER_PORT"]
    assert found["worker-1"].argv[:3] == ["dask", "worker", f"tcp://127.0.0.1:{port}"]
    assert found["worker-2"].argv[found["worker-2"].argv.index("--name") + 1] == "worker-2"
    assert found["s3"].argv == ["moto_server", "-H", "127.0.0.1", "-p", env["S3_PORT"]]
    assert found["seed"].depends_on["scheduler"] == "service_healthy"
    assert found["zdu"].depends_on["seed"] == "service_completed_successfully"
    assert found["zdu"].argv == [
        "zdu", "validate", "s3://demo/sample.zarr",  # "zdu" the program is not a host
        "-o", f"endpoint_url=http://127.0.0.1:{env['S3_PORT']}",
        "--scheduler", f"tcp://127.0.0.1:{port}", "--no-progress",
    ]  # fmt: skip
    order = compose_local._order(found, "zdu")
    assert order[-1] == "zdu"
    assert order.index("s3") < order.index("seed")
    assert compose_local.interpolate("$${A:-x}${B:-y}${C}", {"C": "c"}) == "${A:-x}yc"


@pytest.mark.slow
def test_compose_equivalent_run(tmp_path: Path):
    """The README's command: all services as local processes, zdu's exit code, no leftovers."""
    env, marker = _marked_env()
    args = [sys.executable, str(DEPLOY / "compose_local.py"), str(DEPLOY / "docker-compose.yml")]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Metadata validation for s3://demo/sample.zarr: OK" in done.stdout
    assert re.search(r"engine: distributed: 2 worker\(s\)", done.stdout)
    assert "== zdu exited with 0" in done.stderr
    assert _leftovers(marker) == []


# --- Kubernetes ------------------------------------------------------------------------------

MANIFEST = DEPLOY / "kubernetes" / "zdu-validate.yaml"


def test_kubernetes_manifest_validates_with_the_readme_command():
    args = [sys.executable, str(DEPLOY / "kubernetes" / "validate.py"), str(MANIFEST)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DaskCluster/zdu checked" in done.stdout
    assert "Job/zdu-validate checked" in done.stdout


def test_kubernetes_manifest_fields_we_rely_on():
    cluster, job = yaml.safe_load_all(MANIFEST.read_text())
    assert (cluster["kind"], job["kind"]) == ("DaskCluster", "Job")
    name = cluster["metadata"]["name"]
    comm = {p["name"]: p for p in cluster["spec"]["scheduler"]["service"]["ports"]}["tcp-comm"]
    (zdu,) = job["spec"]["template"]["spec"]["containers"]
    args = zdu["args"]
    # the operator names the scheduler Service <cluster>-scheduler
    assert args[args.index("--scheduler") + 1] == f"tcp://{name}-scheduler:{comm['port']}"
    assert args[:2] == ["zdu", "validate"]
    assert job["spec"]["backoffLimit"] == 0
    images = {c["image"] for c in cluster["spec"]["worker"]["spec"]["containers"]}
    images |= {c["image"] for c in cluster["spec"]["scheduler"]["spec"]["containers"]}
    assert images == {zdu["image"]}  # one environment everywhere
    assert cluster["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == name


def test_kubernetes_schemas_reject_mistakes():
    cluster, job = yaml.safe_load_all(MANIFEST.read_text())
    cluster["spec"]["worker"]["replicaz"] = 3  # pruned silently by the API server
    cluster["spec"]["scheduler"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8786"
    del cluster["spec"]["scheduler"]["service"]
    job["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    found = k8s_validate.problems(cluster) + k8s_validate.problems(job)
    assert any("'replicaz' was unexpected" in p for p in found), found
    assert any("'8786' is not of type 'integer'" in p for p in found), found
    assert any("'service' is a required property" in p for p in found), found
    assert any(p.startswith("Job/zdu-validate") and "restartPolicyy" in p for p in found), found
    assert (
        "Couldn't find schema" in k8s_validate.problems({"apiVersion": "x/v1", "kind": "Nope"})[0]
    )


def test_connect_timeout_variable_of_the_job_is_honoured(tmp_path: Path):
    """The Job sets DASK_ZARR_DASK_UTILS__CLUSTER__CONNECT_TIMEOUT: zdu must read it."""
    build_sample_hierarchy(str(tmp_path / "a.zarr"))
    port = compose_local.free_port()  # nobody listens there
    env = {**os.environ, "DASK_ZARR_DASK_UTILS__CLUSTER__CONNECT_TIMEOUT": "1s"}
    done = subprocess.run(
        [str(BIN / "zdu"), "validate", str(tmp_path / "a.zarr"), "--scheduler",
         f"tcp://127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "within 1 s" in done.stderr


# --- the steps the recipes run in their containers -------------------------------------------


def test_seed_and_wait_steps(tmp_path: Path, client: Any):
    assert deploy_steps.main(["seed", str(tmp_path / "a.zarr")]) == 0
    assert (tmp_path / "a.zarr" / "climate" / "t2m" / "zarr.json").exists()
    assert deploy_steps.main(["seed", str(tmp_path / "d.zarr"), "--demo"]) == 0
    assert (tmp_path / "d.zarr" / "climate" / "wind").exists()
    assert deploy_steps.main(["seed", "s3://bucket/x.zarr", "--demo"]) == 2
    address = client.scheduler.address
    assert deploy_steps.wait_for_workers(address, 2, timeout="30s") >= 2
    assert deploy_steps.main(["wait-workers", address, "99", "--timeout", "1s"]) == 2


@pytest.mark.s3
def test_seed_creates_the_bucket(s3_endpoint: str, s3_storage_options: dict[str, Any]):
    bucket = f"seed-{uuid.uuid4().hex[:8]}"
    url = f"s3://{bucket}/sample.zarr"
    options = [f"-o{k}={v}" for k, v in s3_storage_options.items()]
    assert deploy_steps.main(["seed", url, *options]) == 0
    assert deploy_steps.main(["seed", f"s3://{bucket}/again.zarr", *options]) == 0  # bucket exists
    import s3fs

    fs = s3fs.S3FileSystem(**s3_storage_options)
    assert fs.exists(f"{bucket}/sample.zarr/zarr.json")
    assert fs.exists(f"{bucket}/again.zarr/zarr.json")
