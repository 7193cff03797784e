#!/usr/bin/env bash
# Makes sure the services the tests use are up: PostgreSQL on 127.0.0.1:5432 (trust auth for
# the local users postgres and root) and Redis on 127.0.0.1:6379. A service that already
# answers is left alone (the machine's own are normally up); one that does not is started
# from the installed binaries, installed with apt-get first when missing. Idempotent.
set -euo pipefail

PG_PORT=${BABELGATE_PG_PORT:-5432}
REDIS_PORT=${BABELGATE_REDIS_PORT:-6379}
STATE=${BABELGATE_SERVICES_DIR:-$HOME/.cache/babelgate/services}

listening() {  # host port
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() {  # name port
    for _ in $(seq 1 100); do
        listening 127.0.0.1 "$2" && return 0
        sleep 0.1
    done
    echo "services.sh: $1 did not start on 127.0.0.1:$2" >&2
    return 1
}

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "services.sh: $* missing; install it (apt-get install $*) or run as root" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_bin() {  # the newest installed PostgreSQL's bin directory
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

start_postgres() {
    [ -n "$(pg_bin)" ] || apt_install postgresql
    local bin data run
    bin=$(pg_bin)
    data="$STATE/postgres"
    run="$STATE/run"
    mkdir -p "$STATE" "$run"
    local as=()
    if [ "$(id -u)" = 0 ]; then  # initdb and postgres refuse to run as root
        chown -R postgres:postgres "$STATE"
        as=(runuser -u postgres --)
    fi
    if [ ! -s "$data/PG_VERSION" ]; then
        "${as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
    fi
    "${as[@]}" "$bin/pg_ctl" -D "$data" -l "$STATE/postgres.log" -w start \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $run" >/dev/null
    wait_for PostgreSQL "$PG_PORT"
    # The tests connect as postgres or as root: give root a superuser role too.
    "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qtAc \
        "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'root') THEN
         CREATE ROLE root SUPERUSER LOGIN; END IF; END \$\$;" >/dev/null
    if [ -z "$("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qtAc \
            "SELECT 1 FROM pg_database WHERE datname = 'test'")" ]; then
        "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE test"
    fi
}

start_redis() {
    command -v redis-server >/dev/null || apt_install redis-server
    mkdir -p "$STATE"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --save "" \
        --appendonly no --dir "$STATE" --logfile "$STATE/redis.log"
    wait_for Redis "$REDIS_PORT"
}

listening 127.0.0.1 "$PG_PORT" || start_postgres
listening 127.0.0.1 "$REDIS_PORT" || start_redis
echo "services.sh: PostgreSQL on 127.0.0.1:$PG_PORT and Redis on 127.0.0.1:$REDIS_PORT are up"
