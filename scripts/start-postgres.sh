#!/usr/bin/env bash
# Start a throw-away PostgreSQL (Debian's package) for the review-store tests.
#   scripts/start-postgres.sh DIR          initdb into DIR (if new), start it, print its URL
#   scripts/start-postgres.sh --stop DIR   stop it
# It listens on a unix socket inside DIR only (no TCP port: nothing else on the machine can
# reach it or collide with it). Installs the package with apt-get when missing (root or
# password-less sudo); on any failure it prints why on stderr, nothing on stdout, and exits 1,
# so the tests that need it skip.
set -u

fail() { echo "start-postgres: $*" >&2; exit 1; }

find_bin() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    return 1
}

if [ "${1:-}" = "--stop" ]; then
    DIR="${2:?usage: start-postgres.sh --stop DIR}"
    BIN="$(find_bin)" || exit 0
    AS=""; [ "$(id -u)" = "0" ] && AS="runuser -u postgres --"
    $AS "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1
    exit 0
fi
DIR="${1:?usage: start-postgres.sh DIR}"

if ! BIN="$(find_bin)"; then
    command -v apt-get >/dev/null 2>&1 || fail "PostgreSQL is not installed and apt-get is not found"
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"
        else fail "PostgreSQL is not installed; not root and no sudo to install it"; fi
    fi
    log="$(mktemp -t start-postgres.XXXXXX)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { $SUDO apt-get update -qq && \
           $SUDO apt-get install -y -qq --no-install-recommends postgresql; } >"$log" 2>&1; then
        tail -n 5 "$log" >&2; rm -f "$log"
        fail "apt-get install postgresql failed"
    fi
    rm -f "$log"
    BIN="$(find_bin)" || fail "postgresql installed but pg_ctl not found"
fi

# initdb refuses to run as root: root runs the server as the package's postgres user.
AS=""; USER_NAME="$(id -un)"
if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || fail "running as root and there is no postgres user"
    AS="runuser -u postgres --"; USER_NAME=postgres
fi
mkdir -p "$DIR" || fail "cannot create $DIR"
DIR="$(cd "$DIR" && pwd)"
[ -n "$AS" ] && chown postgres "$DIR"
if [ ! -f "$DIR/data/PG_VERSION" ]; then
    $AS "$BIN/initdb" -D "$DIR/data" -U "$USER_NAME" -A trust -E UTF8 --no-locale >"$DIR/initdb.log" 2>&1 \
        || { tail -n 5 "$DIR/initdb.log" >&2; fail "initdb failed"; }
fi
PORT=5432  # only names the socket file (.s.PGSQL.5432) inside DIR
if ! $AS "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    $AS "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 \
        -o "-c listen_addresses='' -k $DIR -p $PORT -c fsync=on -c max_connections=200" start >/dev/null 2>&1 \
        || { tail -n 5 "$DIR/server.log" >&2; fail "the server did not start"; }
fi
"$BIN/psql" -h "$DIR" -p "$PORT" -U "$USER_NAME" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='prodcat'" 2>/dev/null | grep -q 1 || \
    "$BIN/createdb" -h "$DIR" -p "$PORT" -U "$USER_NAME" prodcat 2>/dev/null || fail "createdb failed"
echo "postgresql+psycopg://${USER_NAME}@/prodcat?host=${DIR}&port=${PORT}"
