#!/usr/bin/env bash
# bench/upload.sh [SIZE] — how fast a big file uploads through `maas serve` on loopback, as a
# ratio to copying the same file on the same disk, and how much memory the server needs
# while it does. Prints a markdown table. SIZE is what `head -c` takes (default 2G; try
# 256M for a quick check). Environment: RUNS (timed runs per method, default 3; the median
# is reported), BENCH_DIR (parent of the scratch directory, default $TMPDIR or /tmp; the
# file, the copies and the server's data all live there, so on one disk), CARGO_TARGET_DIR,
# MAAS_BIN (a prebuilt release binary to use instead of building one).
#
# Method (see bench/README.md):
# - Reference: `dd if=FILE of=COPY bs=8M conv=fsync`, a copy that is durable when it
#   returns, like an upload: the server fsyncs the staged bytes at the end of each PUT.
#   Plain `cp` (no fsync) is reported for information.
# - `curl -T FILE` to the PUT endpoint with `X-Content-Sha256` (hashed before timing).
# - `maas push FILE` (the release CLI): includes hashing the file on the client.
# - Every timed step starts after `sync`, with FILE in the page cache (read once before),
#   and nothing dropped from the cache. Each upload goes to a fresh draft version after the
#   previous one was deleted and its blob removed, so every run stores the bytes anew.
# - Server memory: VmRSS of the server process sampled every 50 ms during each upload;
#   baseline is the sample just before it, growth = peak − baseline (worst run).
set -euo pipefail

SIZE=${1:-2G}
RUNS=${RUNS:-3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
PARENT=${BENCH_DIR:-${TMPDIR:-/tmp}}

bench_build

WORK=$(mktemp -d "$PARENT/maas-bench.XXXXXX")
SAMPLER_PID=""
cleanup() {
  if [ -n "$SAMPLER_PID" ]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
  bench_stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the server, a user, an API key, a model -------------------------------------------
log "starting maas serve (data dir $WORK/data)"
bench_start_server "$WORK/server.log" -- --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 --data-dir "$WORK/data"
bench_wait_addrs "$WORK/server.log" listen_addr
S="http://$(bench_addr "$WORK/server.log" listen_addr)"

json_post() { curl -sS --fail-with-body -X POST -H 'content-type: application/json' "$@"; }
json_post "$S/api/v1/auth/register" \
  -d '{"username":"bench","email":"bench@example.com","password":"bench-password-1"}' >/dev/null
json_post -c "$WORK/cookies" "$S/api/v1/auth/login" -d '{"username":"bench","password":"bench-password-1"}' >/dev/null
KEY=$(json_post -b "$WORK/cookies" "$S/api/v1/tenants/bench/keys" -d '{"name":"bench","scopes":["read","manage"]}' |
  grep -o '"key":"[^"]*"' | cut -d'"' -f4)
[ -n "$KEY" ] || die "no API key"
api() { curl -sS --fail-with-body -H "authorization: Bearer $KEY" "$@"; }
api -X POST -H 'content-type: application/json' "$S/api/v1/models" \
  -d '{"tenant":"bench","name":"blob","task":"tensor","visibility":"private"}' >/dev/null
MODEL="$S/api/v1/models/bench/blob"

# --- the file --------------------------------------------------------------------------
FILE="$WORK/blob.bin"
log "writing $SIZE of random data"
head -c "$SIZE" /dev/urandom >"$FILE"
BYTES=$(stat -c %s "$FILE")
[ "$BYTES" -gt 0 ] || die "SIZE '$SIZE' gave an empty file"
SHA=$(sha256sum "$FILE" | cut -d' ' -f1) # also brings the file into the page cache
BLOB="$WORK/data/artifacts/sha256/${SHA:0:2}/${SHA:2:2}/$SHA"
log "warm-up copy"
cp "$FILE" "$WORK/copy" && rm -f "$WORK/copy" && sync

# --- helpers ---------------------------------------------------------------------------
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"; }
start_sampler() {
  (
    while awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null; do sleep 0.05; done
  ) >"$WORK/rss.samples" &
  SAMPLER_PID=$!
}
stop_sampler() { # prints the peak sample (KiB)
  kill "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=""
  sort -n "$WORK/rss.samples" | tail -1
}
LAST_VERSION=""
fresh_version() { # deletes the previous draft and its blob, creates draft $1
  if [ -n "$LAST_VERSION" ]; then api -X DELETE "$MODEL/versions/$LAST_VERSION" >/dev/null; fi
  rm -f "$BLOB"
  api -X POST -H 'content-type: application/json' "$MODEL/versions" \
    -d "{\"version\":\"$1\",\"format\":\"external\"}" >/dev/null
  LAST_VERSION=$1
}
have_time=false
[ -x /usr/bin/time ] && have_time=true
timed() { # runs "$@" (stdout to $WORK/out.txt), sets $SECS (wall clock) and $CLIENT_KIB (its peak RSS)
  local t0 t1
  sync
  t0=$(now)
  if $have_time; then
    /usr/bin/time -f '%M' -o "$WORK/time.out" "$@" >"$WORK/out.txt"
  else
    "$@" >"$WORK/out.txt"
  fi
  t1=$(now)
  SECS=$(elapsed "$t0" "$t1")
  CLIENT_KIB=$($have_time && tail -1 "$WORK/time.out" || echo "")
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
max() { printf '%s\n' "$@" | sort -g | tail -1; }

declare -A TIMES GROWTH BASE PEAK CLIENT
record() { # method secs [baseline peak client]
  TIMES[$1]="${TIMES[$1]:-} $2"
  if [ $# -gt 2 ]; then
    local growth=$(($4 - $3))
    if [ -z "${GROWTH[$1]:-}" ] || [ "$growth" -gt "${GROWTH[$1]}" ]; then
      GROWTH[$1]=$growth BASE[$1]=$3 PEAK[$1]=$4
    fi
    if [ -n "${5:-}" ]; then CLIENT[$1]=$(max "${CLIENT[$1]:-0}" "$5"); fi
  fi
}

put_with_curl() { # version
  timed curl -sS -H 'Expect:' -H "authorization: Bearer $KEY" -H "x-content-sha256: $SHA" \
    -H 'content-type: application/octet-stream' -T "$FILE" -o "$WORK/curl.out" -w '%{http_code}' \
    "$MODEL/versions/$1/files/blob.bin"
  [ "$(cat "$WORK/out.txt")" = 201 ] || die "curl PUT answered $(cat "$WORK/out.txt"): $(cat "$WORK/curl.out")"
}
push_with_maas() { # version
  MAAS_API_KEY=$KEY MAAS_CONFIG_DIR="$WORK/cfg" timed "$BIN" push "$FILE" bench/blob --version "$1" \
    --format external --server "$S" --output json
  grep -q '"uploaded": 1' "$WORK/out.txt" || die "maas push did not upload: $(cat "$WORK/out.txt")"
}

# --- the runs --------------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$RUNS"); do
  log "run $i/$RUNS: dd conv=fsync"
  rm -f "$WORK/copy"
  timed dd if="$FILE" of="$WORK/copy" bs=8M conv=fsync status=none
  record dd "$SECS"

  log "run $i/$RUNS: dd bs=1M conv=fsync"
  rm -f "$WORK/copy"
  timed dd if="$FILE" of="$WORK/copy" bs=1M conv=fsync status=none
  record dd1m "$SECS"

  log "run $i/$RUNS: cp"
  rm -f "$WORK/copy"
  timed cp "$FILE" "$WORK/copy"
  record cp "$SECS"
  rm -f "$WORK/copy"

  log "run $i/$RUNS: curl PUT"
  fresh_version "curl-$i"
  sync
  base=$(rss_kib)
  start_sampler
  put_with_curl "curl-$i"
  peak=$(stop_sampler)
  record curl "$SECS" "$base" "$(max "$peak" "$base")" "$CLIENT_KIB"

  log "run $i/$RUNS: maas push"
  fresh_version "push-$i"
  sync
  base=$(rss_kib)
  start_sampler
  push_with_maas "push-$i"
  peak=$(stop_sampler)
  record push "$SECS" "$base" "$(max "$peak" "$base")" "$CLIENT_KIB"
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# The last upload must be the file, byte for byte.
stored=$(api "$MODEL/versions/$LAST_VERSION" | grep -o '"sha256":"[^"]*"' | head -1 | cut -d'"' -f4)
[ "$stored" = "$SHA" ] || die "the server stored $stored, expected $SHA"

# --- the table -------------------------------------------------------------------------
MIB=$(awk -v b="$BYTES" 'BEGIN { printf "%.0f", b / 1048576 }')
# The reference is the faster of the two durable copies (block size matters a lot on some
# disks), so the verdict never flatters the server.
REF=$(awk -v a="$(median ${TIMES[dd]})" -v b="$(median ${TIMES[dd1m]})" 'BEGIN { print (a < b) ? a : b }')
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
row() { # method label
  local t rate ratio all
  t=$(median ${TIMES[$1]})
  rate=$(awk -v b="$BYTES" -v t="$t" 'BEGIN { printf "%.0f", b / 1048576 / t }')
  ratio=$(awk -v r="$REF" -v t="$t" 'BEGIN { printf "%.2f×", r / t }')
  all=$(printf '%s\n' ${TIMES[$1]} | paste -sd' ')
  if [ -n "${GROWTH[$1]:-}" ]; then
    local client="-"
    [ -n "${CLIENT[$1]:-}" ] && client=$(mib "${CLIENT[$1]}")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$2" "$t" "$all" "$rate" "$ratio" \
      "$(mib "${BASE[$1]}")" "$(mib "${PEAK[$1]}")" "$(mib "${GROWTH[$1]}")" "$client"
  else
    printf '| %s | %s | %s | %s | %s | - | - | - | - |\n' "$2" "$t" "$all" "$rate" "$ratio"
  fi
}

CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM_TOTAL=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
MEM_AVAIL=$(awk '/^MemAvailable:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
FS=$(df -PT "$WORK" | awk 'NR == 2 { print $2 " on " $1 }')

echo
echo "Upload of a $MIB MiB file over loopback, median of $RUNS runs (seconds); ratio = reference time / method time (reference: the faster durable dd)."
echo
echo "| method | seconds | each run | MiB/s | vs dd fsync | server RSS before | server RSS peak | growth | client peak RSS |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
row dd "dd bs=8M conv=fsync"
row dd1m "dd bs=1M conv=fsync"
row cp "cp, no fsync (for information)"
row curl "curl -T, PUT with X-Content-Sha256"
row push "maas push (hashing included)"
echo
echo "\`bench/upload.sh $SIZE\` (RUNS=$RUNS) on $(nproc) CPUs ($CPU), $MEM_TOTAL RAM ($MEM_AVAIL available), $FS, kernel $(uname -r); load average $LOAD_BEFORE before the runs, $LOAD_AFTER after."

verdict() { # label method
  local t ok growth_mib ratio ratio_cp
  t=$(median ${TIMES[$2]})
  growth_mib=$(awk -v k="${GROWTH[$2]}" 'BEGIN { printf "%.1f", k / 1024 }')
  ratio=$(awk -v r="$REF" -v t="$t" 'BEGIN { printf "%.2f", r / t }')
  ratio_cp=$(awk -v r="$(median ${TIMES[cp]})" -v t="$t" 'BEGIN { printf "%.2f", r / t }')
  ok=$(awk -v r="$ratio" -v g="${GROWTH[$2]}" 'BEGIN { print (r >= 0.8 && g <= 65536) ? "meets" : "MISSES" }')
  echo "- $1: $ok the target (≥ 0.80× the durable reference and server RSS growth ≤ 64 MiB):" \
    "${ratio}× the faster durable dd (${ratio_cp}× plain cp), growth $growth_mib MiB"
}
echo
verdict "curl PUT" curl
verdict "maas push" push
