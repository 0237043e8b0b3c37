#!/usr/bin/env bash
# The cluster on one machine, without Docker: MariaDB, Redis and a Kafka-API
# broker (installed and started if missing), then 2 transfers, 2 connectors,
# a REST API, an offline worker and nginx balancing the client link port over
# the connectors. Every process is started in the background with a pid file
# and a log in one folder, and stopped by its pid.
#
#   scripts/cluster.sh up            start everything (builds im-server --release)
#   scripts/cluster.sh down          stop what `up` started (engines stay up)
#   scripts/cluster.sh status        which processes are running
#   scripts/cluster.sh kill NAME     SIGKILL one process (t1 t2 c1 c2 rest worker nginx)
#   scripts/cluster.sh start NAME    start one process again, as `up` did
#
# Environment (defaults): IM_CLUSTER_DIR (<repo>/.run/cluster; logs/ and
# pids/ inside), IM_CLUSTER_LINK_PORT (7000, nginx), IM_CLUSTER_WS_PORT
# (7001, nginx), IM_CLUSTER_HTTP_PORT (7080), IM_CLUSTER_TRANSFER_PORTS
# ("7101 7102"), IM_CLUSTER_CONNECTOR_PORTS ("7201 7202"),
# IM_CLUSTER_CONNECTOR_WS_PORTS ("7211 7212"), IM_CLUSTER_DB (im_cluster), IM_MYSQL_URL
# (mysql://root@127.0.0.1:3306), IM_REDIS_URL (redis://127.0.0.1:6379),
# IM_CLUSTER_REDIS_PREFIX (imc), IM_KAFKA_PORT (19092), IM_CLUSTER_TOPIC
# (im.messages), IM_CLUSTER_GROUP (im-offline-worker),
# IM_CLUSTER_LEASE_SECS (9), IM_SERVER_BIN (build target/release/im-server).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${IM_CLUSTER_DIR:-$repo/.run/cluster}"
logs="$dir/logs" pids="$dir/pids" cmds="$dir/cmd"
link_port="${IM_CLUSTER_LINK_PORT:-7000}"
ws_port="${IM_CLUSTER_WS_PORT:-7001}"
http_port="${IM_CLUSTER_HTTP_PORT:-7080}"
read -r -a transfer_ports <<<"${IM_CLUSTER_TRANSFER_PORTS:-7101 7102}"
read -r -a connector_ports <<<"${IM_CLUSTER_CONNECTOR_PORTS:-7201 7202}"
read -r -a connector_ws_ports <<<"${IM_CLUSTER_CONNECTOR_WS_PORTS:-7211 7212}"
db="${IM_CLUSTER_DB:-im_cluster}"
mysql_url="${IM_MYSQL_URL:-mysql://root@127.0.0.1:3306}"
redis_url="${IM_REDIS_URL:-redis://127.0.0.1:6379}"
prefix="${IM_CLUSTER_REDIS_PREFIX:-imc}"
kafka_port="${IM_KAFKA_PORT:-19092}"
topic="${IM_CLUSTER_TOPIC:-im.messages}"
group="${IM_CLUSTER_GROUP:-im-offline-worker}"
lease="${IM_CLUSTER_LEASE_SECS:-9}"

# True when process $1 holds a socket listening on TCP port $2. Read from
# /proc, so nothing else need be installed. An answer on the port alone is
# not enough: a port picked free can be taken by another program (another
# cluster of the parallel tests, say) before ours binds it, and ours then
# exits while the port still answers.
listening() {
    local pid="$1" want fd inode
    want="$(printf ':%04X' "$2")"
    for inode in $(awk -v p="$want" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null); do
        for fd in "/proc/$pid/fd/"*; do
            [ "$(readlink "$fd" 2>/dev/null)" = "socket:[$inode]" ] && return 0
        done
    done
    return 1
}

wait_port() {
    local name="$1" port="$2"
    for _ in $(seq 1 150); do
        if ! alive "$name"; then
            echo "cluster.sh: $name exited; see $logs/$name.log" >&2
            tail -5 "$logs/$name.log" >&2 || true
            return 1
        fi
        listening "$(cat "$pids/$name.pid")" "$port" && return 0
        sleep 0.1
    done
    echo "cluster.sh: $name did not listen on $port; see $logs/$name.log" >&2
    return 1
}

alive() { [ -f "$pids/$1.pid" ] && kill -0 "$(cat "$pids/$1.pid")" 2>/dev/null; }

server_bin() {
    if [ -n "${IM_SERVER_BIN:-}" ]; then
        echo "$IM_SERVER_BIN"
        return
    fi
    (cd "$repo" && cargo build --release --locked -p im-server >&2)
    echo "$repo/target/release/im-server"
}

# Runs the saved command of NAME in the background, with its pid file.
launch() {
    local name="$1"
    alive "$name" && return 0
    # shellcheck disable=SC2046
    nohup $(cat "$cmds/$name") >>"$logs/$name.log" 2>&1 &
    echo $! >"$pids/$name.pid"
}

# Saves NAME's command line (binary, role, flags) so `start NAME` can rerun it.
define() {
    local name="$1"
    shift
    echo "$*" >"$cmds/$name"
}

transfer_list() {
    local list="" p
    for p in "${transfer_ports[@]}"; do list="${list:+$list,}127.0.0.1:$p"; done
    echo "$list"
}

write_nginx_conf() {
    local links="" ws="" i
    for i in "${!connector_ports[@]}"; do
        links+="        server 127.0.0.1:${connector_ports[$i]} max_fails=1 fail_timeout=10s;"$'\n'
        ws+="        server 127.0.0.1:${connector_ws_ports[$i]} max_fails=1 fail_timeout=10s;"$'\n'
    done
    local template
    template="$(cat "$repo/deploy/nginx-stream.conf.template")"
    template="${template//@LINK_SERVERS@/${links%$'\n'}}"
    template="${template//@WS_SERVERS@/${ws%$'\n'}}"
    template="${template//@MODULES@//usr/lib/nginx/modules}"
    template="${template//@RUN@/$dir}"
    template="${template//@LOGS@/$logs}"
    template="${template//@LINK_PORT@/$link_port}"
    template="${template//@WS_PORT@/$ws_port}"
    echo "$template" >"$dir/nginx.conf"
}

up() {
    mkdir -p "$logs" "$pids" "$cmds"
    "$repo/scripts/ensure-services.sh"
    "$repo/scripts/ensure-nginx.sh"
    IM_KAFKA_TOPICS="$topic:16" "$repo/scripts/kafka.sh" start
    mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS \`$db\`"
    local bin common i
    bin="$(server_bin)"
    common="--database-url ${mysql_url%/}/$db --redis-url $redis_url --redis-prefix $prefix \
--kafka-brokers 127.0.0.1:$kafka_port --kafka-topic $topic --kafka-group $group \
--status-lease-secs $lease --data-dir $dir/data"
    for i in "${!transfer_ports[@]}"; do
        define "t$((i + 1))" "$bin" --role transfer $common --transfer-addr "127.0.0.1:${transfer_ports[$i]}"
    done
    for i in "${!connector_ports[@]}"; do
        define "c$((i + 1))" "$bin" --role connector $common --transfers "$(transfer_list)" \
            --connector-id "c$((i + 1))" --link-addr "127.0.0.1:${connector_ports[$i]}" \
            --ws-addr "127.0.0.1:${connector_ws_ports[$i]}"
    done
    define rest "$bin" --role rest-api $common --transfers "$(transfer_list)" --http-addr "127.0.0.1:$http_port"
    define worker "$bin" --role offline-worker $common --transfers "$(transfer_list)" --kafka-instance-id worker
    write_nginx_conf
    define nginx nginx -c "$dir/nginx.conf" -p "$dir"

    for i in "${!transfer_ports[@]}"; do
        launch "t$((i + 1))"
    done
    for i in "${!transfer_ports[@]}"; do
        wait_port "t$((i + 1))" "${transfer_ports[$i]}"
    done
    for i in "${!connector_ports[@]}"; do launch "c$((i + 1))"; done
    launch rest
    launch worker
    for i in "${!connector_ports[@]}"; do wait_port "c$((i + 1))" "${connector_ports[$i]}"; done
    wait_port rest "$http_port"
    launch nginx
    wait_port nginx "$link_port"
    echo "cluster.sh: up. REST http://127.0.0.1:$http_port, links 127.0.0.1:$link_port" \
        "(WebSocket 127.0.0.1:$ws_port) via nginx over connectors ${connector_ports[*]}; logs in $logs"
}

stop_one() {
    local name="$1" pidfile="$pids/$1.pid" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
}

names() {
    local i
    echo nginx
    for i in "${!connector_ports[@]}"; do echo "c$((i + 1))"; done
    echo rest
    echo worker
    for i in "${!transfer_ports[@]}"; do echo "t$((i + 1))"; done
}

down() {
    local name pidfile
    for name in $(names); do stop_one "$name"; done
    # What `up` started under another environment (more connector ports,
    # say) has pid files too: stop those as well.
    for pidfile in "$pids"/*.pid; do
        [ -e "$pidfile" ] || continue
        name="$(basename "$pidfile" .pid)"
        stop_one "$name"
    done
    echo "cluster.sh: down (MariaDB, Redis and the broker stay up; scripts/kafka.sh stop stops the broker)"
}

status() {
    local name state=0
    for name in $(names); do
        if alive "$name"; then echo "$name up (pid $(cat "$pids/$name.pid"))"; else echo "$name down"; state=1; fi
    done
    return "$state"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    kill)
        [ -f "$pids/${2:?name}.pid" ] || { echo "cluster.sh: no pid file for $2" >&2; exit 1; }
        kill -KILL "$(cat "$pids/$2.pid")" 2>/dev/null || true
        rm -f "$pids/$2.pid" ;;
    start)
        [ -f "$cmds/${2:?name}" ] || { echo "cluster.sh: $2 was never defined; run up first" >&2; exit 1; }
        launch "$2" ;;
    *) echo "usage: $0 up|down|status|kill NAME|start NAME" >&2; exit 2 ;;
esac
