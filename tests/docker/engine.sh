#!/usr/bin/env bash
# A private Docker engine and the local server images for the Docker tests.
#
#   tests/docker/engine.sh start   install docker.io, mmdebstrap and docker-compose if missing
#                                  (Debian, root),
#                                  start a private dockerd, build the local images
#   tests/docker/engine.sh stop    stop that dockerd by its pid and remove its bridge
#   tests/docker/engine.sh env     print the DOCKER_HOST line to eval
#
# Every step is skipped when already done, so `start` is cheap the second time.
# The engine has its own socket, data root, exec root and bridge, and makes no
# firewall changes (--iptables=false: published ports go through docker-proxy,
# which listens on 127.0.0.1 only), so it leaves the host's Docker, if any, and
# the host's own PostgreSQL (5432) and Redis (6379) alone. No image registry is
# needed: the images are built from Debian's packages (mmdebstrap | docker import),
# then a small `docker build` adds the entry point, CMD, HEALTHCHECK and STOPSIGNAL.
# Timings of each step go to stderr.
set -euo pipefail

NAME=worker-utils-docker
SOCKET=${WORKER_UTILS_DOCKER_SOCKET:-/run/$NAME.sock}
DATA_ROOT=${WORKER_UTILS_DOCKER_DATA_ROOT:-/var/lib/$NAME}
EXEC_ROOT=/run/$NAME
PIDFILE=/run/$NAME.pid
LOG=/var/log/$NAME.log
BRIDGE=wudocker0
BRIDGE_CIDR=${WORKER_UTILS_DOCKER_BRIDGE_CIDR:-10.213.0.1/24}
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
SECURITY="deb http://deb.debian.org/debian-security $SUITE-security main"
# The tags the tests use (tests/docker/conftest.py).
BASE_IMAGE=worker-utils-local/debian-servers:$SUITE
POSTGRES_IMAGE=worker-utils-local/postgres:15
REDIS_IMAGE=worker-utils-local/redis:7
HERE=$(cd "$(dirname "$0")" && pwd)

export DOCKER_HOST=unix://$SOCKET
export DOCKER_BUILDKIT=0 # the legacy builder: no buildx plugin needed

now() { date +%s.%N; }
took() { printf 'engine.sh: %s took %.1fs\n' "$1" "$(echo "$(now) - $2" | bc)" >&2; }
say() { printf 'engine.sh: %s\n' "$*" >&2; }

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v bc >/dev/null || missing+=(bc)
    # Compose, for the test of examples/docker/compose.yaml: Debian has v1 only.
    command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 ||
        missing+=(docker-compose)
    [ ${#missing[@]} -eq 0 ] && return
    local t0
    t0=$(date +%s)
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    say "install took $(($(date +%s) - t0))s"
}

daemon_pid() {
    local pid
    [ -s "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE")
    [ -d "/proc/$pid" ] && grep -q dockerd "/proc/$pid/cmdline" && echo "$pid"
}

ready() { docker version >/dev/null 2>&1; }

start_daemon() {
    if daemon_pid >/dev/null && ready; then
        return
    fi
    local t0 driver
    t0=$(now)
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add name "$BRIDGE" type bridge
        ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    for driver in overlay2 vfs; do
        # shellcheck disable=SC2016
        setsid nohup dockerd --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" \
            -H "unix://$SOCKET" --pidfile "$PIDFILE" --storage-driver "$driver" \
            --bridge "$BRIDGE" --iptables=false --ip-forward=false --ip-masq=false \
            >>"$LOG" 2>&1 </dev/null &
        for _ in $(seq 300); do
            ready && break
            kill -0 $! 2>/dev/null || break
            sleep 0.1
        done
        if ready; then
            took "daemon start ($driver)" "$t0"
            return
        fi
        say "dockerd did not start with $driver; log: $LOG"
        tail -5 "$LOG" >&2
        kill $! 2>/dev/null || true
        wait $! 2>/dev/null || true
    done
    say "dockerd did not start"
    exit 1
}

has_image() { docker image inspect "$1" >/dev/null 2>&1; }

build_images() {
    local t0
    if ! has_image "$BASE_IMAGE"; then
        t0=$(now)
        # --skip=cleanup/run: mmdebstrap empties /run, where PostgreSQL needs its lock dir.
        mmdebstrap --quiet --variant=essential --include=postgresql-15,redis-server \
            --skip=cleanup/run \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --customize-hook='rm -rf "$1"/var/lib/postgresql/15 "$1"/etc/postgresql/15' \
            "$SUITE" - "$MIRROR" "$SECURITY" | docker import - "$BASE_IMAGE" >/dev/null
        took "rootfs image build" "$t0"
    fi
    local image kind
    for kind in postgres redis; do
        image=$POSTGRES_IMAGE
        [ $kind = redis ] && image=$REDIS_IMAGE
        has_image "$image" && continue
        t0=$(now)
        docker build -q --build-arg "BASE=$BASE_IMAGE" -f "$HERE/images/Dockerfile.$kind" \
            -t "$image" "$HERE/images" >/dev/null 2>&1
        took "$image build" "$t0"
    done
}

ready_time() {
    # Start-to-ready of one throwaway container per image, through its 127.0.0.1 port.
    local t0 id port
    t0=$(now)
    id=$(docker run -d --rm -e POSTGRES_HOST_AUTH_METHOD=trust \
        --tmpfs /var/lib/postgresql/data -p 127.0.0.1::5432 "$POSTGRES_IMAGE" 2>/dev/null)
    port=$(docker port "$id" 5432/tcp | head -1 | sed 's/.*://')
    for _ in $(seq 500); do
        psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1 && break
        sleep 0.02
    done
    took "$POSTGRES_IMAGE container start-to-ready" "$t0"
    docker rm -f "$id" >/dev/null
    t0=$(now)
    id=$(docker run -d --rm --tmpfs /data -p 127.0.0.1::6379 "$REDIS_IMAGE" 2>/dev/null)
    port=$(docker port "$id" 6379/tcp | head -1 | sed 's/.*://')
    for _ in $(seq 500); do
        [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break
        sleep 0.02
    done
    took "$REDIS_IMAGE container start-to-ready" "$t0"
    docker rm -f "$id" >/dev/null
}

stop_daemon() {
    local pid
    if pid=$(daemon_pid); then
        kill -TERM "$pid"
        for _ in $(seq 200); do
            [ -d "/proc/$pid" ] || break
            sleep 0.1
        done
        [ -d "/proc/$pid" ] && kill -KILL "$pid"
        say "stopped dockerd $pid"
    fi
    rm -f "$PIDFILE" "$SOCKET"
    # Its state directory, unless something is still mounted under it.
    grep -q " $EXEC_ROOT" /proc/mounts || rm -rf "$EXEC_ROOT"
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link delete "$BRIDGE"
    fi
}

case "${1:-}" in
start)
    [ "$(id -u)" = 0 ] || { say "start needs root (apt-get, dockerd)"; exit 1; }
    install_packages
    start_daemon
    build_images
    [ "${2:-}" = --measure ] && ready_time
    say "ready; export DOCKER_HOST=$DOCKER_HOST"
    ;;
stop) stop_daemon ;;
env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
*)
    echo "usage: $0 start [--measure] | stop | env" >&2
    exit 2
    ;;
esac
