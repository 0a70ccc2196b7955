#!/usr/bin/env bash
# Shared by the benchmark scripts (sourced): logging, the release binary, and a scratch
# `maas serve` whose addresses are read from its JSON log. Expects ROOT to be set.

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/maas/target}
BIN=${MAAS_BIN:-$CARGO_TARGET_DIR/release/maas}
SERVER_PID=""

bench_log() { printf '[bench] %s\n' "$*" >&2; }
log() { bench_log "$@"; }
die() {
  bench_log "error: $*"
  exit 1
}

# Builds the release binary unless MAAS_BIN names one.
bench_build() {
  if [ -z "${MAAS_BIN:-}" ]; then
    bench_log "building the release binary"
    (cd "$ROOT" && cargo build --release -q -p maas) >&2
  fi
  [ -x "$BIN" ] || die "no binary at $BIN"
}

# bench_start_server LOGFILE [-u VAR…] [VAR=value…] -- ARG…: runs `maas serve ARG…` in the
# background with those `env` changes and none of the user's backend settings; sets SERVER_PID.
bench_start_server() {
  local logfile=$1 vars=()
  shift
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do vars+=("$1"); shift; done
  shift
  env -u MAAS_DATABASE_URL -u MAAS_REDIS_URL -u MAAS_LISTEN -u MAAS_GRPC_LISTEN -u MAAS_DATA_DIR \
    -u MAAS_LOG_FORMAT "${vars[@]}" MAAS_LOG_LEVEL=warn,maas=info \
    "$BIN" serve --log-format json "$@" >"$logfile" 2>&1 &
  SERVER_PID=$!
}

# bench_addr LOGFILE FIELD: the address the server logged under FIELD (e.g. listen_addr).
bench_addr() { grep -o "\"$2\":\"[^\"]*\"" "$1" | head -1 | cut -d'"' -f4; }

# bench_wait_addrs LOGFILE FIELD…: waits until the server logged every FIELD (20 s at most).
bench_wait_addrs() {
  local logfile=$1 field ok
  shift
  for _ in $(seq 200); do
    ok=1
    for field in "$@"; do [ -n "$(bench_addr "$logfile" "$field")" ] || ok=0; done
    [ "$ok" = 1 ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(tail -5 "$logfile")"
    sleep 0.1
  done
  die "the server did not log its addresses: $(tail -5 "$logfile")"
}

bench_stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
