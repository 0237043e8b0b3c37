#!/usr/bin/env bash
# Makes sure a Redis answers on 127.0.0.1:${IM_REDIS_PORT:-6379}: installs
# Debian's redis-server if it is missing and starts it if nothing answers.
# Leaves an already running server alone.
set -euo pipefail
port="${IM_REDIS_PORT:-6379}"

ping() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }

if command -v redis-cli >/dev/null 2>&1 && ping; then
    exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
    echo "ensure-redis: installing redis-server" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
mkdir -p /var/lib/redis /var/log/redis
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/im.log
for _ in $(seq 1 50); do
    ping && exit 0
    sleep 0.2
done
echo "ensure-redis: Redis did not answer on port $port" >&2
exit 1
