#!/usr/bin/env bash
# Makes sure the backing services the tests use are running on loopback: PostgreSQL and
# Redis. Idempotent: a service already answering is left alone; one installed but stopped is
# started; one missing is installed with apt-get. Sourced by scripts/test.sh, or run alone.
# Exports MAAS_TEST_POSTGRES_URL and MAAS_TEST_REDIS_URL unless they are already set.

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

wait_for() { # wait_for SECONDS CMD...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
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

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ensure_postgres
  ensure_redis
  echo "MAAS_TEST_POSTGRES_URL=$MAAS_TEST_POSTGRES_URL"
  echo "MAAS_TEST_REDIS_URL=$MAAS_TEST_REDIS_URL"
fi
