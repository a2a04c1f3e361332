#!/usr/bin/env bash
# Start what the test suite needs that this machine does not already run.
# Idempotent: a service that already answers is left alone.
set -euo pipefail

REDIS_HOST=127.0.0.1
REDIS_PORT=6379

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" --appendonly no
  for _ in $(seq 50); do
    redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null

# The Redis Cluster and the hosts of tests/cluster.py and tests/hosts.py: a redis-server and
# redis-cli of their own (Redis 7 or later), whatever Redis already answers above, and `ip`
# for network namespaces.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v ip >/dev/null || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi

# PostgreSQL for the database tests (TEST_POSTGRES_URL): trust authentication on loopback,
# as on the CI service; a fresh install is configured that way here.
PG_HOST=127.0.0.1
PG_PORT=5432
pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
if ! pg_up 2>/dev/null; then
  if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
    apt_install postgresql
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    done
  fi
  for version in $(ls /etc/postgresql); do
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 100); do pg_up && break; sleep 0.1; done
fi
pg_up

# The browser tests drive Debian's Chromium through Playwright, never a downloaded build.
[ -x /usr/bin/chromium ] || apt_install chromium
