#!/usr/bin/env bash
# zdu on a cluster spread over separate (network-namespace) hosts: a scheduler host, two worker
# hosts and an S3 server host, each with its own address on a private test bridge; zdu runs in
# the root namespace with --scheduler-file, as on an HPC login node. Then tear everything down.
#
# Usage (root: network namespaces need it):
#   sudo deploy/multihost-demo.sh
#
# Environment:
#   WORKER_HOSTS       worker hosts (default 2)
#   WORKERS_PER_HOST   dask worker processes per host (default 1)
#   LATENCY            S3 first-byte delay through the latency rig, e.g. 20ms (default: none)
#   KEEP_WORKDIR=1     keep the temporary folder (scheduler file, logs)
#   QUICK=1            only zdu validate (the test suite runs it this way)
#
# Exits 1 with the reason where network namespaces cannot be made (not root, a container
# without CAP_SYS_ADMIN). The hosts are made by `python -m zarr_dask_utils.testing.multihost
# serve`, which deletes its namespaces, links and processes when it gets SIGTERM (sent on exit,
# also on Ctrl-C or a failing command) or when this script dies.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$ROOT/.venv/bin/zdu" ]]; then
    BIN="$ROOT/.venv/bin/"
else
    BIN=""
fi
ZDU="${BIN}zdu"
PYTHON="${BIN}python"

# The same check as `python -m zarr_dask_utils.testing.multihost check`, without the imports.
refuse() {
    echo "multihost-demo: cannot run here: network namespaces are not available here: $1" >&2
    echo "multihost-demo: run it as root on Linux (deploy/local-scheduler.sh needs no root)." >&2
    exit 1
}
command -v ip >/dev/null || refuse "the ip command (iproute2) is not installed"
[[ $EUID -eq 0 ]] || refuse "network namespaces need root; this shell is uid $EUID"
PROBE="zdu-probe-$$"
if ! err="$(ip netns add "$PROBE" 2>&1)"; then
    refuse "ip netns add is not allowed here: $err"
fi
ip netns del "$PROBE"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/zdu-multihost.XXXXXX")"
SERVE_PID=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$SERVE_PID" ]]; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    if [[ $status -ne 0 ]]; then
        echo "== failed (exit $status); last lines of the host logs:" >&2
        tail -n 20 "$WORK"/serve.log "$WORK"/logs/*.log >&2 2>/dev/null || true
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

echo "== starting the hosts (scheduler, ${WORKER_HOSTS:-2} worker hosts, S3) in $WORK"
"$PYTHON" -m zarr_dask_utils.testing.multihost serve --workdir "$WORK" \
    --worker-hosts "${WORKER_HOSTS:-2}" --workers-per-host "${WORKERS_PER_HOST:-1}" --sample \
    ${LATENCY:+--latency "$LATENCY"} >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 600); do
    [[ -s "$WORK/multihost.env" ]] && break
    kill -0 "$SERVE_PID" 2>/dev/null || { echo "the hosts did not start" >&2; exit 1; }
    sleep 0.1
done
[[ -s "$WORK/multihost.env" ]] || { echo "the hosts did not start within 60 s" >&2; exit 1; }
# shellcheck disable=SC1091
source "$WORK/multihost.env"
sed 's/^/   /' "$WORK/serve.log"
echo "   scheduler $ZDU_MH_SCHEDULER_ADDRESS; workers $ZDU_MH_WORKERS; S3 $ZDU_MH_S3_ENDPOINT"

S3=(-o "endpoint_url=$ZDU_MH_S3_ENDPOINT" -o key=testing -o secret=testing)
DST_S3=(--dst-storage-option "endpoint_url=$ZDU_MH_S3_ENDPOINT" --dst-storage-option key=testing
    --dst-storage-option secret=testing)
B_S3=(--b-storage-option "endpoint_url=$ZDU_MH_S3_ENDPOINT" --b-storage-option key=testing
    --b-storage-option secret=testing)
STORE="$ZDU_MH_SAMPLE"
CLUSTER=(--scheduler-file "$ZDU_MH_SCHEDULER_FILE" --no-progress)
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true

echo "== the sample store (built by serve --sample): $STORE"

echo
echo "== zdu validate $STORE --scheduler-file $ZDU_MH_SCHEDULER_FILE"
"$ZDU" validate "$STORE" "${S3[@]}" "${CLUSTER[@]}" --json >"$WORK/validate.json"
"$PYTHON" -c '
import json, sys
report = json.load(open(sys.argv[1]))
print("   ok:", report["ok"], "| engine:", report["engine"])
if sys.argv[2] not in report["engine"]:
    sys.exit(f"the graph did not run on {sys.argv[2]}")
' "$WORK/validate.json" "$ZDU_MH_SCHEDULER_ADDRESS"

if [[ "${QUICK:-0}" != 1 ]]; then
echo
echo "== zdu check --deep $STORE"
"$ZDU" check --deep "$STORE" "${S3[@]}" "${CLUSTER[@]}"

echo
echo "== zdu rechunk $STORE -> s3://$ZDU_MH_BUCKET/rechunked.zarr"
"$ZDU" rechunk "$STORE" "s3://$ZDU_MH_BUCKET/rechunked.zarr" --chunks 2,2,2 --max-mem 8MiB \
    "${S3[@]}" "${DST_S3[@]}" "${CLUSTER[@]}"

echo
echo "== zdu compare $STORE s3://$ZDU_MH_BUCKET/rechunked.zarr (same values, other chunks)"
"$ZDU" compare "$STORE" "s3://$ZDU_MH_BUCKET/rechunked.zarr" "${S3[@]}" "${B_S3[@]}" \
    "${CLUSTER[@]}"

echo
echo "== tasks run per worker (every worker sits on a namespace host)"
"$PYTHON" -c '
import sys
from distributed import Client
with Client(scheduler_file=sys.argv[1], timeout="30s") as client:
    for address, n in sorted(client.run(lambda dask_worker: dask_worker.state.executed_count).items()):
        print(f"   {address}: {n} task(s)")
' "$ZDU_MH_SCHEDULER_FILE"
fi

echo
echo "== done; tearing the hosts down"
