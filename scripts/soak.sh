#!/usr/bin/env bash
# The chaos soak: builds the release server and the chaos tool, makes sure
# the tools a cluster needs are here (Redis and MariaDB binaries, tansu),
# and runs `im-chaos soak` with the given flags, e.g.
#
#   scripts/soak.sh --minutes 10                 # the cluster (default)
#   scripts/soak.sh --minutes 10 --mode single   # the single-node server
#
# The soak starts its own Redis, MariaDB and broker on free ports in a
# temporary directory, kills and restarts them and every server role during
# traffic, stops every process it started, and prints a summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-services.sh >/dev/null
IM_TANSU_BIN="$(./scripts/kafka.sh install | tail -1)"
export IM_TANSU_BIN
cargo build --release --locked -p im-server -p im-chaos
exec target/release/im-chaos soak --server-bin target/release/im-server "$@"
