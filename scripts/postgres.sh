# shellcheck shell=bash
# Sourced by scripts/test: makes sure TENANCY_TEST_DATABASE_URL names a PostgreSQL
# server the tests can create databases on.
#
#   1. TENANCY_TEST_DATABASE_URL when already set;
#   2. else the server on 127.0.0.1:5432 when it answers (user postgres, trust auth);
#   3. else a throwaway cluster under target/pg (initdb + pg_ctl from Debian's
#      postgresql, installed with apt-get when missing), stopped when the tests end.
# In every case PostgreSQL's server programs are there and TENANCY_PG_BIN names them.

pg_answers() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

pg_bin_dir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# PostgreSQL's server programs (initdb, pg_ctl, pg_basebackup), installed with apt-get
# when missing; exported as TENANCY_PG_BIN for the tests that start clusters of their
# own (crates/cli/tests/region_failover.rs), whichever server TENANCY_TEST_DATABASE_URL
# names.
ensure_pg_bin() {
  local bin
  if [ -n "${TENANCY_PG_BIN:-}" ] && [ -x "$TENANCY_PG_BIN/initdb" ]; then return 0; fi
  if ! bin=$(pg_bin_dir); then
    echo "scripts/test: installing PostgreSQL (apt-get install postgresql)" >&2
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
    bin=$(pg_bin_dir) || { echo "scripts/test: no initdb after installing postgresql" >&2; return 1; }
  fi
  export TENANCY_PG_BIN="$bin"
}

start_throwaway_postgres() {
  local bin root port=55432
  ensure_pg_bin || return 1
  bin=$TENANCY_PG_BIN
  root="$(pwd)/target/pg"
  mkdir -p "$root"
  [ "$(id -u)" = 0 ] && chown postgres "$root"
  if [ ! -f "$root/data/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$root/data" -U postgres --auth=trust >/dev/null
  fi
  if ! pg_answers 127.0.0.1 $port; then
    as_postgres "$bin/pg_ctl" -D "$root/data" -l "$root/log" -w \
      -o "-p $port -k $root -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c log_lock_waits=on -c log_min_duration_statement=10000" start >/dev/null
    TENANCY_PG_STOP="$bin/pg_ctl -D $root/data -m fast stop"
  fi
  export TENANCY_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "scripts/test: using a throwaway PostgreSQL on 127.0.0.1:$port" >&2
}

# What the throwaway cluster logged besides routine checkpoints and disconnections:
# lock waits, statements over 10 s, barrier waits, errors. Printed when tests fail, as
# CI's cluster is gone afterwards.
throwaway_postgres_log() {
  local log
  log="$(pwd)/target/pg/log"
  [ -n "${TENANCY_PG_STOP:-}" ] && [ -f "$log" ] || return 0
  echo "=== the throwaway PostgreSQL's log (lock waits, slow statements, errors; last 200 lines)" >&2
  grep -v -e "checkpoint starting" -e "checkpoint complete" -e "could not receive data from client" \
    -e "terminating connection due to administrator command" -e "does not exist" -e "^\s*$" "$log" |
    tail -n 200 >&2 || true
}

stop_throwaway_postgres() {
  if [ -n "${TENANCY_PG_STOP:-}" ]; then as_postgres $TENANCY_PG_STOP >/dev/null 2>&1 || true; fi
}

ensure_pg_bin

if [ -z "${TENANCY_TEST_DATABASE_URL:-}" ]; then
  if pg_answers 127.0.0.1 5432; then
    export TENANCY_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    echo "scripts/test: using the PostgreSQL on 127.0.0.1:5432" >&2
  else
    start_throwaway_postgres
    trap stop_throwaway_postgres EXIT
  fi
fi
