#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the console's tests and benchmarks.
#
#   eval "$(scripts/postgres.sh)"      # installs if missing, starts, exports RINGFENCE_TEST_POSTGRES
#   scripts/postgres.sh stop           # stops the cluster
#
# Settings (environment): RINGFENCE_PG_DIR (default /tmp/ringfence-pg), RINGFENCE_PG_PORT
# (default 55432). The cluster listens on 127.0.0.1 and a socket in its data dir, trusts local
# connections, and has one database, ringfence_test. Tests create their own databases beside it.
# It also serves TLS with a certificate from a throwaway CA made here, exported as
# RINGFENCE_TEST_POSTGRES_CA, so tests can connect with sslmode=verify-full.
# Only the export line goes to stdout; progress goes to stderr.
set -euo pipefail

DIR="${RINGFENCE_PG_DIR:-/tmp/ringfence-pg}"
PORT="${RINGFENCE_PG_PORT:-55432}"

pgbin() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    [ -n "$d" ] && [ -x "$d/pg_ctl" ] && echo "$d"
}

BIN="$(pgbin || true)"
if [ -z "$BIN" ]; then
    echo "postgres.sh: installing PostgreSQL from Debian packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN="$(pgbin)"
fi

# initdb and postgres refuse to run as root: run them as the postgres user when we are root.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "${1:-start}" = stop ]; then
    as_pg "$BIN/pg_ctl" -D "$DIR" -m fast stop >&2 || true
    exit 0
fi

if [ ! -f "$DIR/PG_VERSION" ]; then
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
    as_pg "$BIN/initdb" -D "$DIR" -U postgres -A trust -E UTF8 >&2
fi

TLS="$DIR/tls"
if [ ! -f "$TLS/server.crt" ]; then
    mkdir -p "$TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ringfence test PG CA" \
        -keyout "$TLS/ca.key" -out "$TLS/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$TLS/server.key" -out "$TLS/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$TLS/san.ext"
    openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
        -CAcreateserial -days 3650 -extfile "$TLS/san.ext" -out "$TLS/server.crt" 2>/dev/null
    chmod 0700 "$TLS"
    chmod 0600 "$TLS/server.key" "$TLS/ca.key"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$TLS"
fi

OPTS="-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=200"
OPTS="$OPTS -c ssl=on -c ssl_cert_file=$TLS/server.crt -c ssl_key_file=$TLS/server.key"
if as_pg "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1 &&
    ! as_pg "$BIN/psql" -h "$DIR" -p "$PORT" -U postgres -tAc "SHOW ssl" 2>/dev/null | grep -q on; then
    echo "postgres.sh: restarting the cluster with TLS on" >&2
    as_pg "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >&2
fi
if ! as_pg "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
    # A cluster that was not shut down cleanly (the machine stopped under it) syncs its whole
    # data directory before it accepts connections: give it minutes, not pg_ctl's default 60 s.
    as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 600 -o "$OPTS" start >&2
fi

# The tests create a database each (`rf_...`) and leave it: drop those of earlier runs, so the
# cluster does not grow run after run (it had reached 869 databases and 7.4 GB here, and took
# minutes to start). One still in use is left alone.
as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'rf\_%'" |
    while read -r db; do
        [[ "$db" =~ ^rf_[A-Za-z0-9_]+$ ]] || continue
        as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qc "DROP DATABASE IF EXISTS $db" \
            >/dev/null 2>&1 || true
    done

if ! as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'ringfence_test'" | grep -q 1; then
    as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres ringfence_test
fi

echo "export RINGFENCE_TEST_POSTGRES=postgres://postgres@127.0.0.1:$PORT/ringfence_test RINGFENCE_TEST_POSTGRES_CA=$TLS/ca.pem"
