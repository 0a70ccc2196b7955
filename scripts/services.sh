#!/usr/bin/env bash
# Makes sure the backing services the tests use are running on loopback: PostgreSQL, Redis and
# an S3 server (SeaweedFS), plus the Python venv of reference clients (scripts/pyenv.sh).
# Idempotent: a service already answering is left alone; one installed but stopped is
# started; one missing is installed with apt-get (SeaweedFS comes from the venv, via pip).
# Sourced by scripts/test.sh, or run alone (`scripts/services.sh stop-seaweedfs` stops ours).
# Exports MAAS_TEST_POSTGRES_URL, MAAS_TEST_REDIS_URL, MAAS_TEST_NATS_URL, MAAS_TEST_PYTHON and MAAS_TEST_S3_*
# unless they are already set.

PG_TEST_ROLE=maas_test
PG_TEST_PASSWORD=maas-test-pw

log() { printf '[services] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

apt_install() {
  log "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

MAAS_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/pyenv.sh
source "$MAAS_SCRIPTS_DIR/pyenv.sh"
# shellcheck source=scripts/onnxruntime.sh
source "$MAAS_SCRIPTS_DIR/onnxruntime.sh"
# shellcheck source=scripts/models.sh
source "$MAAS_SCRIPTS_DIR/models.sh"

wait_for() { # wait_for SECONDS CMD...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# The build needs cmake and a C++ compiler (llama.cpp, vendored by the llama-cpp-sys-2 crate,
# is built from source) and libclang (its bindings are generated with bindgen).
ensure_build_tools() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v c++ >/dev/null || missing+=(g++)
  command -v curl >/dev/null || missing+=(curl) # the SSE framing test
  # bindgen needs libclang itself (libclang.so / libclang-N.so), not libclang-cpp.
  ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
    /usr/lib/x86_64-linux-gnu/libclang.so* /usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so* >/dev/null 2>&1 ||
    missing+=(libclang-dev)
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
  log "build tools ready (cmake, c++, libclang)"
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432; }

# Runs SQL as the PostgreSQL superuser: over TCP if trusted, else through the local socket.
pg_admin_sql() {
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d postgres -tAc "$1" 2>/dev/null && return 0
  as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres -tAc "$1"
}

ensure_postgres() {
  if [ -n "${MAAS_TEST_POSTGRES_URL:-}" ]; then log "using MAAS_TEST_POSTGRES_URL as given"; return 0; fi
  if ! command -v pg_isready >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql
  fi
  if ! pg_ready; then
    log "starting PostgreSQL"
    as_root service postgresql start >/dev/null 2>&1 || {
      for cluster in /etc/postgresql/*/main; do
        v=$(basename "$(dirname "$cluster")"); as_root pg_ctlcluster "$v" main start || true
      done
    }
    wait_for 60 pg_ready || { log "PostgreSQL did not become ready"; return 1; }
  fi
  # A password-authenticated role that may create databases works under trust, md5 and
  # scram-sha-256 alike.
  pg_admin_sql "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_TEST_ROLE') THEN
        CREATE ROLE $PG_TEST_ROLE LOGIN CREATEDB PASSWORD '$PG_TEST_PASSWORD';
      ELSE ALTER ROLE $PG_TEST_ROLE LOGIN CREATEDB PASSWORD '$PG_TEST_PASSWORD'; END IF; END \$\$;"
  export MAAS_TEST_POSTGRES_URL="postgres://$PG_TEST_ROLE:$PG_TEST_PASSWORD@127.0.0.1:5432/postgres"
  # Databases left by earlier runs (each test makes its own maas_t_<uuid>).
  local stale
  stale=$(pg_admin_sql "SELECT datname FROM pg_database WHERE datname LIKE 'maas\_t\_%'")
  for db in $stale; do pg_admin_sql "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; done
  log "PostgreSQL ready ($(echo "$stale" | grep -c . || true) stale test databases dropped)"
}

redis_ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  if [ -n "${MAAS_TEST_REDIS_URL:-}" ]; then log "using MAAS_TEST_REDIS_URL as given"; return 0; fi
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server redis-tools
  if ! redis_ready; then
    log "starting Redis"
    as_root service redis-server start >/dev/null 2>&1 || true
    redis_ready || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no >/dev/null
    wait_for 30 redis_ready || { log "Redis did not become ready"; return 1; }
  fi
  export MAAS_TEST_REDIS_URL="redis://127.0.0.1:6379"
  log "Redis ready"
}

# NATS with JetStream on 4222: the usage event stream. The tests use their own stream names.
NATS_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/maas/nats"

ensure_nats() {
  if [ -n "${MAAS_TEST_NATS_URL:-}" ]; then log "using MAAS_TEST_NATS_URL as given"; return 0; fi
  if ! port_open 4222; then
    command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
    local bin; bin=$(command -v nats-server || echo /usr/sbin/nats-server)
    log "starting nats-server with JetStream"
    mkdir -p "$NATS_DIR"
    nohup "$bin" -js -a 127.0.0.1 -p 4222 -m 8222 -sd "$NATS_DIR" >"$NATS_DIR/nats.log" 2>&1 &
    wait_for 30 port_open 4222 || { log "nats-server did not start: $(tail -5 "$NATS_DIR/nats.log")"; return 1; }
  fi
  export MAAS_TEST_NATS_URL="nats://127.0.0.1:4222"
  log "NATS ready"
}

# SeaweedFS: master, volume, filer and S3 gateway in one `weed server` process, on loopback,
# on fixed uncommon ports (gRPC ports are HTTP + 10000), data and log under SEAWEEDFS_DIR.
SEAWEEDFS_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/maas/seaweedfs"
SEAWEEDFS_S3_PORT=18333
SEAWEEDFS_MASTER_PORT=19333
SEAWEEDFS_VOLUME_PORT=18080
SEAWEEDFS_FILER_PORT=18888
S3_TEST_ACCESS_KEY=maas-test
S3_TEST_SECRET_KEY=maas-test-secret

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

proc_alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# Prints the pid of our `weed server` (the one whose -dir is SEAWEEDFS_DIR), if it runs.
seaweedfs_pid() {
  local pid
  pid=$(cat "$SEAWEEDFS_DIR/weed.pid" 2>/dev/null) || pid=
  if [ -n "$pid" ] && proc_alive "$pid" &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "weed server -dir=$SEAWEEDFS_DIR "; then
    echo "$pid"; return 0
  fi
  # Pid file lost or stale: look for the process itself.
  pid=$(pgrep -o -f "weed server -dir=$SEAWEEDFS_DIR " 2>/dev/null) || return 1
  proc_alive "$pid" || return 1
  echo "$pid" >"$SEAWEEDFS_DIR/weed.pid"
  echo "$pid"
}

start_seaweedfs() {
  local weed=$1 port
  for port in $SEAWEEDFS_S3_PORT $SEAWEEDFS_MASTER_PORT $SEAWEEDFS_VOLUME_PORT $SEAWEEDFS_FILER_PORT \
    $((SEAWEEDFS_S3_PORT + 10000)) $((SEAWEEDFS_MASTER_PORT + 10000)) \
    $((SEAWEEDFS_VOLUME_PORT + 10000)) $((SEAWEEDFS_FILER_PORT + 10000)); do
    if port_open "$port"; then
      log "port $port on 127.0.0.1 is taken by another process (not our SeaweedFS, see $SEAWEEDFS_DIR/weed.pid);" \
        "free it, or point the tests at an S3 server with MAAS_TEST_S3_ENDPOINT and MAAS_TEST_S3_*"
      return 1
    fi
  done
  # Static identity for SigV4-signed requests; anonymous requests are refused.
  cat >"$SEAWEEDFS_DIR/s3.json" <<JSON
{
  "identities": [
    {
      "name": "$S3_TEST_ACCESS_KEY",
      "credentials": [{ "accessKey": "$S3_TEST_ACCESS_KEY", "secretKey": "$S3_TEST_SECRET_KEY" }],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }
  ]
}
JSON
  [ -f "$SEAWEEDFS_DIR/weed.log" ] && mv -f "$SEAWEEDFS_DIR/weed.log" "$SEAWEEDFS_DIR/weed.log.1"
  rm -f "$SEAWEEDFS_DIR/weed.pid"
  log "starting SeaweedFS (log: $SEAWEEDFS_DIR/weed.log)"
  # Detached in its own session; cwd and HOME are the data dir so that no filer.toml,
  # security.toml or master.toml of the user's (./ or ~/.seaweedfs/) changes our server.
  # -master.electionTimeout=1s: a restarted single master otherwise needs ~17 s to lead again.
  # -s3.port.iceberg/-s3.port.lance=0: those would otherwise listen on 8181 and 9101.
  (cd "$SEAWEEDFS_DIR" && HOME="$SEAWEEDFS_DIR" setsid -f sh -c 'echo $$ >weed.pid; exec "$@"' sh \
    "$weed" server -dir="$SEAWEEDFS_DIR" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port=$SEAWEEDFS_MASTER_PORT -master.port.grpc=$((SEAWEEDFS_MASTER_PORT + 10000)) \
    -master.electionTimeout=1s -master.volumeSizeLimitMB=1024 -master.telemetry=false \
    -volume.port=$SEAWEEDFS_VOLUME_PORT -volume.port.grpc=$((SEAWEEDFS_VOLUME_PORT + 10000)) \
    -volume.max=50 -volume.preStopSeconds=0 \
    -filer -filer.port=$SEAWEEDFS_FILER_PORT -filer.port.grpc=$((SEAWEEDFS_FILER_PORT + 10000)) \
    -s3 -s3.port=$SEAWEEDFS_S3_PORT -s3.port.grpc=$((SEAWEEDFS_S3_PORT + 10000)) \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$SEAWEEDFS_DIR/s3.json" -s3.iam=false \
    -s3.autoCreateBucket=false \
    >>weed.log 2>&1 </dev/null 9>&-)
  wait_for 5 test -s "$SEAWEEDFS_DIR/weed.pid"
}

ensure_seaweedfs() {
  if [ -n "${MAAS_TEST_S3_ENDPOINT:-}" ]; then
    export MAAS_TEST_S3_REGION="${MAAS_TEST_S3_REGION:-us-east-1}"
    export MAAS_TEST_S3_BUCKET="${MAAS_TEST_S3_BUCKET:-maas-test}"
    log "using MAAS_TEST_S3_ENDPOINT as given"; return 0
  fi
  local weed="$MAAS_VENV/bin/weed" py="$MAAS_VENV/bin/python" how=reused
  [ -x "$weed" ] && [ -x "$py" ] || { log "no $weed: run ensure_python_venv first"; return 1; }
  mkdir -p "$SEAWEEDFS_DIR"
  # Find or start ours under a lock, so that parallel runs start one server between them.
  if ! seaweedfs_pid >/dev/null; then
    how=started
    ( flock 9; seaweedfs_pid >/dev/null || start_seaweedfs "$weed" ) 9>"$SEAWEEDFS_DIR/.lock" || return 1
  fi
  local s3_env=(MAAS_TEST_S3_ENDPOINT="http://127.0.0.1:$SEAWEEDFS_S3_PORT"
    MAAS_TEST_S3_ACCESS_KEY="$S3_TEST_ACCESS_KEY" MAAS_TEST_S3_SECRET_KEY="$S3_TEST_SECRET_KEY"
    MAAS_TEST_S3_REGION=us-east-1 MAAS_TEST_S3_BUCKET="${MAAS_TEST_S3_BUCKET:-maas-test}")
  # Ready = the bucket exists and takes a write; a fresh start also runs the smoke check once.
  local check_args=(--wait 60)
  [ "$how" = started ] && check_args+=(--check)
  env "${s3_env[@]}" "$py" "$MAAS_SCRIPTS_DIR/check_s3.py" "${check_args[@]}" >&2 || {
    log "SeaweedFS S3 did not become ready; last lines of $SEAWEEDFS_DIR/weed.log:"
    tail -n 20 "$SEAWEEDFS_DIR/weed.log" >&2 || true
    return 1
  }
  export "${s3_env[@]}"
  log "SeaweedFS S3 ready ($how, pid $(seaweedfs_pid || echo '?'), $MAAS_TEST_S3_ENDPOINT, bucket $MAAS_TEST_S3_BUCKET)"
}

# Sends TERM, waits up to 5 s (weed often hangs in its graceful gRPC stop), then KILLs.
stop_seaweedfs() {
  local pid _
  pid=$(seaweedfs_pid) || { log "SeaweedFS is not running"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do proc_alive "$pid" || break; sleep 0.1; done
  if proc_alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 50); do proc_alive "$pid" || break; sleep 0.1; done
  fi
  rm -f "$SEAWEEDFS_DIR/weed.pid"
  log "SeaweedFS stopped (pid $pid)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  if [ "${1:-}" = stop-seaweedfs ]; then stop_seaweedfs; exit 0; fi
  ensure_postgres
  ensure_redis
  ensure_nats
  ensure_python_venv
  ensure_onnxruntime
  ensure_seaweedfs
  ensure_model_fixtures
  echo "MAAS_TEST_NATS_URL=$MAAS_TEST_NATS_URL"
  echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
  echo "MAAS_TEST_ONNX_DIR=$MAAS_TEST_ONNX_DIR"
  echo "MAAS_TEST_MODELS_DIR=$MAAS_TEST_MODELS_DIR"
  echo "MAAS_TEST_POSTGRES_URL=$MAAS_TEST_POSTGRES_URL"
  echo "MAAS_TEST_REDIS_URL=$MAAS_TEST_REDIS_URL"
  echo "MAAS_TEST_PYTHON=$MAAS_TEST_PYTHON"
  for v in MAAS_TEST_S3_{ENDPOINT,ACCESS_KEY,SECRET_KEY,REGION,BUCKET}; do echo "$v=${!v:-}"; done
fi
