#!/usr/bin/env bash
# A Kafka-API broker on loopback for the cluster mode and its tests: tansu
# (crates.io; Apache Kafka is not packaged for Debian), built once into a
# cache outside the repo and reused, storing its log in SQLite so data
# survives a broker restart.
#
#   scripts/kafka.sh install build tansu into the cache if it is not there
#   scripts/kafka.sh start   install if missing, start if not answering, create topics
#   scripts/kafka.sh stop    stop the broker this script started (by its pid file)
#   scripts/kafka.sh status
#
# Environment: IM_KAFKA_PORT (19092), IM_RUN_DIR (<repo>/.run),
# IM_TOOLS (~/.cache/im-tools), IM_KAFKA_TOPICS ("im.messages:16").
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
port="${IM_KAFKA_PORT:-19092}"
run="${IM_RUN_DIR:-$repo/.run}/kafka"
tools="${IM_TOOLS:-$HOME/.cache/im-tools}"
tansu="$tools/tansu/bin/tansu"
topics="${IM_KAFKA_TOPICS:-im.messages:16}"
url="tcp://127.0.0.1:$port"

answering() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

install() {
    [ -x "$tansu" ] && return
    echo "kafka.sh: building tansu into $tools (once; about 15 minutes on 2 cores)" >&2
    # --locked: the build fails with newer dependency versions.
    cargo install tansu --locked --features libsql,postgres,dynostore --root "$tools/tansu"
}

start() {
    install
    mkdir -p "$run"
    if ! answering; then
        # tansu reads the path of a sqlite:// URL relative to its working
        # directory, so it runs from the run directory.
        (cd "$run" && exec "$tansu" broker --listener-url "$url" --advertised-listener-url "$url" \
            --storage-engine "sqlite://broker.db" >broker.log 2>&1) &
        echo $! >"$run/broker.pid"
        for _ in $(seq 1 100); do
            answering && break
            sleep 0.2
        done
        answering || { echo "kafka.sh: broker did not answer on $port; see $run/broker.log" >&2; exit 1; }
    fi
    for spec in $topics; do
        name="${spec%%:*}" partitions="${spec##*:}"
        # Creating an existing topic fails; that is fine.
        "$tansu" topic create "$name" --partitions "$partitions" --broker "$url" >/dev/null 2>&1 || true
    done
    echo "kafka.sh: broker on $url"
}

stop() {
    local pidfile="$run/broker.pid"
    [ -f "$pidfile" ] || return 0
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
    install) install; echo "$tansu" ;;
    start) start ;;
    stop) stop ;;
    status) answering && echo "up on $url" || { echo "down"; exit 1; } ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
