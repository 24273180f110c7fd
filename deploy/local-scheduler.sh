#!/usr/bin/env bash
# Run zdu on a Dask cluster you start yourself: one `dask scheduler` and two `dask worker`
# processes on loopback, then zdu against them three ways (--scheduler, --scheduler-file,
# DASK_SCHEDULER_ADDRESS), then tear everything down.
#
# Usage:
#   deploy/local-scheduler.sh [STORE [zdu options...]]
#
#   STORE defaults to a small zarr store built in a temporary folder. Extra arguments are
#   passed to every zdu command, e.g. for S3-compatible storage:
#     deploy/local-scheduler.sh s3://bucket/data.zarr -o endpoint_url=http://127.0.0.1:9000
#
# Environment:
#   SCHEDULER_PORT     scheduler port (default 0: a free port, read back from the scheduler file)
#   DASHBOARD_ADDRESS  scheduler dashboard (default 127.0.0.1:0: a free port, printed below)
#   N_THREADS          threads per worker (default 2)
#   KEEP_WORKDIR=1     keep the temporary folder (scheduler file, logs, example store)
#
# Uses the repository's .venv when it exists, else dask/zdu/python from PATH. Every process
# it starts is stopped on exit (also on Ctrl-C or a failing command), by its PID.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$ROOT/.venv/bin/zdu" ]]; then
    BIN="$ROOT/.venv/bin/"
else
    BIN=""
fi
DASK="${BIN}dask"
ZDU="${BIN}zdu"
PYTHON="${BIN}python"

SCHEDULER_PORT="${SCHEDULER_PORT:-0}"
DASHBOARD_ADDRESS="${DASHBOARD_ADDRESS:-127.0.0.1:0}"
N_THREADS="${N_THREADS:-2}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/zdu-local-scheduler.XXXXXX")"
SCHEDULER_FILE="$WORK/scheduler.json"
PIDS=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Workers first (their nannies stop the worker processes), then the scheduler.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        echo "== failed (exit $status); last lines of the cluster logs:" >&2
        tail -n 20 "$WORK"/*.log >&2 || true
    fi
    if [[ "${KEEP_WORKDIR:-0}" == 1 ]]; then
        echo "== kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting the scheduler (scheduler file $SCHEDULER_FILE)"
"$DASK" scheduler --host 127.0.0.1 --port "$SCHEDULER_PORT" \
    --dashboard-address "$DASHBOARD_ADDRESS" \
    --scheduler-file "$SCHEDULER_FILE" >"$WORK/scheduler.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 300); do
    [[ -s "$SCHEDULER_FILE" ]] && break
    kill -0 "${PIDS[0]}" 2>/dev/null || { echo "the scheduler exited" >&2; exit 1; }
    sleep 0.1
done
[[ -s "$SCHEDULER_FILE" ]] || { echo "no scheduler file after 30 s" >&2; exit 1; }

read -r ADDRESS DASHBOARD_PORT < <("$PYTHON" -c '
import json, sys
info = json.load(open(sys.argv[1]))
print(info["address"], info.get("services", {}).get("dashboard", "-"))
' "$SCHEDULER_FILE")
echo "   scheduler at $ADDRESS, dashboard at http://127.0.0.1:$DASHBOARD_PORT/status"

for i in 1 2; do
    echo "== starting worker $i"
    # Workers need zarr-dask-utils installed (same version as here) and, for S3, credentials.
    "$DASK" worker --scheduler-file "$SCHEDULER_FILE" --host 127.0.0.1 \
        --nthreads "$N_THREADS" --name "worker-$i" --no-dashboard \
        --local-directory "$WORK/worker-$i" >"$WORK/worker-$i.log" 2>&1 &
    PIDS+=($!)
done

"$PYTHON" -c '
import sys
from distributed import Client

def installed():
    from importlib.metadata import version
    return version("zarr-dask-utils")

with Client(scheduler_file=sys.argv[1], timeout="30s") as client:
    client.wait_for_workers(2, timeout="60s")
    versions = client.run(installed)
    print("   workers up:", ", ".join(f"{w} (zarr-dask-utils {v})" for w, v in versions.items()))
' "$SCHEDULER_FILE"

if [[ $# -ge 1 ]]; then
    STORE="$1"
    shift
else
    STORE="$WORK/example.zarr"
    echo "== building an example store at $STORE"
    "$PYTHON" -c '
import sys
import numpy as np
import zarr
root = zarr.open_group(sys.argv[1], mode="w", zarr_format=3)
surface = root.create_group("surface")
for name in ("t2m", "u10", "v10"):
    a = surface.create_array(name, shape=(24, 90), chunks=(6, 90), dtype="f4")
    a[:] = np.arange(24 * 90, dtype="f4").reshape(24, 90)
root.create_array("time", shape=(24,), chunks=(24,), dtype="i8")[:] = np.arange(24)
' "$STORE"
fi

echo
echo "== zdu info $STORE --scheduler $ADDRESS"
"$ZDU" info "$STORE" --scheduler "$ADDRESS" --no-progress "$@"

echo
echo "== zdu consolidate $STORE --scheduler-file $SCHEDULER_FILE"
"$ZDU" consolidate "$STORE" --scheduler-file "$SCHEDULER_FILE" --no-progress "$@"

echo
echo "== DASK_SCHEDULER_ADDRESS=$ADDRESS zdu validate $STORE --json"
DASK_SCHEDULER_ADDRESS="$ADDRESS" "$ZDU" validate "$STORE" --json "$@" >"$WORK/validate.json" \
    || status=$?
"$PYTHON" -c '
import json, sys
report = json.load(open(sys.argv[1]))
print("   ok:", report.get("ok"), "| engine:", report.get("engine"))
if sys.argv[2] not in str(report.get("engine")):
    sys.exit(f"the graph did not run on {sys.argv[2]}")
' "$WORK/validate.json" "$ADDRESS"

echo
echo "== done; stopping the workers and the scheduler"
exit "${status:-0}"
