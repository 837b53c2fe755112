#!/bin/sh
# Entry point of the local test images, compatible with the official postgres and
# redis images for what worker_utils uses: `postgres [-c name=value ...]` with
# POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, POSTGRES_HOST_AUTH_METHOD and
# PGDATA; `redis-server [options]` in /data. Servers run as their own users.
set -eu

if [ "${1:-}" = postgres ]; then
    shift
    : "${PGDATA:=/var/lib/postgresql/data}"
    user=${POSTGRES_USER:-postgres}
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    as_postgres="setpriv --reuid=postgres --regid=postgres --init-groups"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
            echo "error: set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust" >&2
            exit 1
        fi
        pwfile=$(mktemp)
        printf '%s\n' "${POSTGRES_PASSWORD:-postgres}" >"$pwfile"
        chown postgres "$pwfile"
        $as_postgres initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --no-sync \
            --auth-local=trust --auth-host="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" \
            --encoding=UTF8 --locale=C >/dev/null
        rm -f "$pwfile"
        printf 'host all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" \
            >>"$PGDATA/pg_hba.conf"
        if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
            echo "CREATE DATABASE \"$POSTGRES_DB\"" |
                $as_postgres postgres --single -D "$PGDATA" -c fsync=off postgres >/dev/null
        fi
    fi
    exec $as_postgres postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi

if [ "${1:-}" = redis-server ]; then
    shift
    chown redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups redis-server "$@"
fi

exec "$@"
