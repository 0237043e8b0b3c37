#!/usr/bin/env bash
# Makes sure every outside service the test suite talks to is up: Redis and
# MariaDB on loopback. Each script installs and starts its service only if
# nothing answers, and leaves a running one alone.
set -euo pipefail
cd "$(dirname "$0")"
./ensure-redis.sh
./ensure-mariadb.sh
