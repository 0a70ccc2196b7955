#!/usr/bin/env bash
# bench/metering.sh [--seconds S] [--writers N] — durable usage records per second through the
# group-committing Ledger on SQLite and PostgreSQL, next to one commit per record, with the time
# a call waits for its record (the latency metering adds to an inference). Prints a markdown
# table. Needs PostgreSQL (scripts/services.sh starts it). Method: bench/README.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
ensure_postgres
log() { bench_log "$@"; }

# METERING_BENCH: a prebuilt examples/metering_bench instead of building one.
METERING_BENCH=${METERING_BENCH:-}
if [ -z "$METERING_BENCH" ]; then
  bench_log "building examples/metering_bench (release)"
  (cd "$ROOT" && cargo build --release -q -p maas-metering --example metering_bench) >&2
  METERING_BENCH=$CARGO_TARGET_DIR/release/examples/metering_bench
fi
DB="maas_bench_$$"
psql "$MAAS_TEST_POSTGRES_URL" -qc "CREATE DATABASE $DB" >/dev/null
trap 'psql "$MAAS_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$METERING_BENCH" ledger --postgres "${MAAS_TEST_POSTGRES_URL%/*}/$DB" "$@"
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
