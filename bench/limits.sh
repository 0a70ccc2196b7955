#!/usr/bin/env bash
# bench/limits.sh [--calls N] — p50/p99 of one admission check in memory and on Redis (one Lua
# script over loopback), next to a bare Redis PING on the same connection. Prints a markdown
# table. Needs Redis (scripts/services.sh starts it). Method: bench/README.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
ensure_redis
log() { bench_log "$@"; }

# METERING_BENCH: a prebuilt examples/metering_bench instead of building one.
METERING_BENCH=${METERING_BENCH:-}
if [ -z "$METERING_BENCH" ]; then
  bench_log "building examples/metering_bench (release)"
  (cd "$ROOT" && cargo build --release -q -p maas-metering --example metering_bench) >&2
  METERING_BENCH=$CARGO_TARGET_DIR/release/examples/metering_bench
fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$METERING_BENCH" limits --redis "$MAAS_TEST_REDIS_URL" "$@"
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
