#!/bin/bash
# PBS Pro / OpenPBS batch job: start a Dask scheduler and one Dask worker per allocated node,
# run `zdu validate` on a store against that cluster, then stop the cluster.
#
#   qsub deploy/pbs-batch.sh                               # validates $STORE (see below)
#   qsub -v STORE=s3://bucket/era5.zarr,ZDU_VENV=/shared/envs/zdu deploy/pbs-batch.sh
#
# The scheduler runs in the batch script (on the first node); the workers are started on every
# node with `pbsdsh -u`. They meet through a scheduler file on a filesystem every node sees.
# The job's exit code is zdu's: 0 healthy, 1 problems found, 2 bad input.
#
# Without PBS (to try the job on one machine, and how the tests run it):
#   ZDU_LOCAL=1 STORE=/path/to/data.zarr bash deploy/pbs-batch.sh
# starts the scheduler and $N_WORKERS (default 2) workers as local processes on 127.0.0.1
# instead of pbsdsh; everything else is the same.
#
#PBS -N zdu-validate
#PBS -l select=2:ncpus=8:mem=16gb
#PBS -l walltime=00:30:00
#PBS -j oe

set -euo pipefail
ZDU_LOCAL="${ZDU_LOCAL:-0}"
# PBS starts the script in $HOME: go back to where qsub was run.
cd "${PBS_O_WORKDIR:-$PWD}"

# --- what to run -------------------------------------------------------------------------
STORE="${STORE:-s3://my-bucket/era5.zarr}"
# Extra zdu options, e.g. "-o endpoint_url=https://s3.example.org" for S3-compatible storage.
ZDU_ARGS="${ZDU_ARGS:-}"
JOB_ID="${PBS_JOBID:-local}"
JOB_ID="${JOB_ID%%.*}"
# The report is printed to the job log and also written as HTML here.
REPORT="${REPORT:-$PWD/zdu-validate-$JOB_ID.html}"

# --- environment -------------------------------------------------------------------------
# Every node must import the same zarr-dask-utils version (worker tasks are functions of the
# package): use one environment on a shared filesystem, e.g. ZDU_VENV=/shared/envs/zdu.
if [[ -n "${ZDU_VENV:-}" ]]; then
    # shellcheck disable=SC1091
    source "$ZDU_VENV/bin/activate"
fi
# pbsdsh starts the workers WITHOUT the job's environment: they are started by the absolute
# path of `dask` in this environment, and S3 credentials must come from ~/.aws/credentials
# on the shared home (AWS_PROFILE cannot be passed either), or as `-o key=... -o secret=...`
# in ZDU_ARGS, which travel with the tasks.
DASK_BIN="$(command -v dask)" || { echo "no dask on PATH: set ZDU_VENV" >&2; exit 2; }

# --- cluster -----------------------------------------------------------------------------
# On a shared filesystem: the workers on other nodes read it to find the scheduler.
SCHEDULER_FILE="${SCHEDULER_FILE:-$PWD/.dask-scheduler-$JOB_ID.json}"
if [[ -n "${PBS_NODEFILE:-}" ]]; then
    N_WORKERS="$(sort -u "$PBS_NODEFILE" | wc -l)"   # pbsdsh -u: one worker per node
fi
N_WORKERS="${N_WORKERS:-2}"
N_THREADS="${NCPUS:-${N_THREADS:-4}}"                # PBS Pro sets NCPUS from select
# Fast interconnect, e.g. DASK_INTERFACE=ib0; empty: the hostname's address.
INTERFACE_ARGS=()
if [[ "$ZDU_LOCAL" == 1 ]]; then
    INTERFACE_ARGS=(--host 127.0.0.1)    # one machine: loopback only
    LOCAL_DIR="$(mktemp -d "${TMPDIR:-/tmp}/dask-local.XXXXXX")"
else
    [[ -z "${DASK_INTERFACE:-}" ]] || INTERFACE_ARGS=(--interface "$DASK_INTERFACE")
    LOCAL_DIR="${TMPDIR:-/tmp}/dask-$JOB_ID"
fi

PIDS=()
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Workers (pbsdsh) first and wait for them, then the scheduler: a worker whose scheduler
    # is gone first retries to connect for a while.
    local pid
    for pid in "${PIDS[@]:1}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:1}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${#PIDS[@]} -gt 0 ]]; then
        kill "${PIDS[0]}" 2>/dev/null || true
        wait "${PIDS[0]}" 2>/dev/null || true
    fi
    rm -f "$SCHEDULER_FILE"
    [[ "$ZDU_LOCAL" != 1 ]] || rm -rf "$LOCAL_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 143' INT TERM    # qdel / walltime: stop the cluster too

rm -f "$SCHEDULER_FILE"
echo "== $(date -Is) starting the scheduler on $(hostname)"
# Dashboard on port 8787 of this node; from a laptop:
#   ssh -L 8787:<this node>:8787 <login node>   then open http://localhost:8787/status
if [[ "$ZDU_LOCAL" == 1 ]]; then
    DASHBOARD_ADDRESS="${DASHBOARD_ADDRESS:-127.0.0.1:0}"
    SCHEDULER_PORT="${SCHEDULER_PORT:-0}"
fi
"$DASK_BIN" scheduler --scheduler-file "$SCHEDULER_FILE" "${INTERFACE_ARGS[@]}" \
    --port "${SCHEDULER_PORT:-8786}" --dashboard-address "${DASHBOARD_ADDRESS:-:8787}" &
PIDS+=($!)

for _ in $(seq 600); do
    [[ -s "$SCHEDULER_FILE" ]] && break
    kill -0 "${PIDS[0]}" 2>/dev/null || { echo "the scheduler exited" >&2; exit 2; }
    sleep 0.1
done
[[ -s "$SCHEDULER_FILE" ]] || { echo "no scheduler file after 60 s" >&2; exit 2; }

echo "== $(date -Is) starting $N_WORKERS worker(s) with $N_THREADS thread(s) each"
# memory-limit auto respects the job's cgroup; local-directory on node-local disk.
WORKER=("$DASK_BIN" worker --scheduler-file "$SCHEDULER_FILE" "${INTERFACE_ARGS[@]}"
    --nthreads "$N_THREADS" --memory-limit auto --local-directory "$LOCAL_DIR" --no-dashboard)
if [[ "$ZDU_LOCAL" == 1 ]]; then
    for ((i = 1; i <= N_WORKERS; i++)); do
        "${WORKER[@]}" --name "local-$i" &
        PIDS+=($!)
    done
else
    pbsdsh -u -- "${WORKER[@]}" &
    PIDS+=($!)
fi

python - "$SCHEDULER_FILE" "$N_WORKERS" <<'PY'
import sys

from distributed import Client


def installed():
    from importlib.metadata import version

    return version("zarr-dask-utils")


with Client(scheduler_file=sys.argv[1], timeout="60s") as client:
    client.wait_for_workers(int(sys.argv[2]), timeout="300s")
    here = installed()
    found = client.run(installed)
    wrong = {w: v for w, v in found.items() if v != here}
    if wrong:
        sys.exit(f"workers with another zarr-dask-utils than {here}: {wrong}")
    print(f"   {len(found)} worker(s) up, zarr-dask-utils {here}; dashboard {client.dashboard_link}")
PY

echo "== $(date -Is) zdu validate $STORE"
status=0
# For pipelines use --json instead (the report as JSON on stdout, same exit codes).
# shellcheck disable=SC2086  # ZDU_ARGS is a list of options
zdu validate "$STORE" --scheduler-file "$SCHEDULER_FILE" --no-progress --html "$REPORT" \
    $ZDU_ARGS || status=$?
echo "== $(date -Is) done (exit $status); HTML report: $REPORT"
exit "$status"
