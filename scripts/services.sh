#!/usr/bin/env bash
# Makes sure a PostgreSQL (15+) and a Redis answer on loopback, starting them (and installing
# Debian's packages) only when they do not. Used by `make dev` and `make test`.
#   PGHOST/PGPORT (default 127.0.0.1:5432), REDIS_PORT (default 6379)
set -euo pipefail

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
STATE_DIR=${WAB_SERVICES_DIR:-/var/tmp/wa-agent-bridge}

log() { echo "services: $*" >&2; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then log "need root to install $*"; exit 1; fi
  log "installing $* from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_ready() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; }
pg_login() { psql -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; }

ensure_postgres() {
  if pg_ready && pg_login; then return; fi
  command -v pg_ctlcluster >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    || apt_install postgresql postgresql-client
  if pg_ready; then
    log "a PostgreSQL answers on $PGHOST:$PGPORT but refuses user postgres without a password"
    log "set TEST_DATABASE_URL / DATABASE_URL to a URL that logs in, or free the port"
    exit 1
  fi
  # A private trust-auth cluster owned by the postgres system user: no change to system config.
  local bin; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  local data="$STATE_DIR/pg"
  mkdir -p "$STATE_DIR"; chmod 755 "$STATE_DIR"
  if [ ! -f "$data/PG_VERSION" ]; then
    install -d -o postgres -g postgres "$data"
    runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 >/dev/null
  fi
  log "starting PostgreSQL on $PGHOST:$PGPORT ($data)"
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
    -o "-c listen_addresses=$PGHOST -p $PGPORT -k $data -c max_connections=300" start >/dev/null
  for _ in $(seq 50); do pg_ready && return; sleep 0.2; done
  log "PostgreSQL did not come up; see $data/server.log"; exit 1
}

pg_query() { psql -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -tAc "$1"; }

# plpgsql_check lints the SQL functions (tests/supabase/test_plpgsql_check.py). Installed only
# for a server on loopback run from this machine's Debian packages; any other server must
# provide the extension itself.
ensure_plpgsql_check() {
  local available="select count(*) from pg_available_extensions where name = 'plpgsql_check'"
  [ "$(pg_query "$available")" = 1 ] && return
  local major; major=$(( $(pg_query 'show server_version_num') / 10000 ))
  local package="postgresql-$major-plpgsql-check" debian_local=no
  case "$PGHOST" in
    127.*|localhost|::1) [ -x "/usr/lib/postgresql/$major/bin/postgres" ] && debian_local=yes ;;
  esac
  if [ "$debian_local" = no ] || [ "$(id -u)" != 0 ]; then
    log "PostgreSQL on $PGHOST:$PGPORT lacks plpgsql_check ($package); the SQL lint test needs it"
    return
  fi
  apt_install "$package"
}

redis_ready() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  if redis_ready; then return; fi
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$STATE_DIR"
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$STATE_DIR" --logfile "$STATE_DIR/redis.log"
  for _ in $(seq 50); do redis_ready && return; sleep 0.1; done
  log "Redis did not come up; see $STATE_DIR/redis.log"; exit 1
}

command -v pg_isready >/dev/null || apt_install postgresql-client
command -v redis-cli >/dev/null || apt_install redis-tools
ensure_postgres
ensure_plpgsql_check
ensure_redis
log "PostgreSQL $PGHOST:$PGPORT and Redis 127.0.0.1:$REDIS_PORT are up"
