#!/usr/bin/env bash
# The benchmarks of issue 5: builds the release server and the load
# generator, makes sure the programs the cluster mode needs are here
# (redis-server, mariadbd, tansu), and runs `im-bench` with the given flags:
#
#   scripts/bench.sh                      # every scenario, quick size, single node and cluster
#   scripts/bench.sh --mode single chat   # one scenario, one mode
#   scripts/bench.sh --full               # the targets' scales (long)
#
# The report (markdown tables and JSON) goes to ./bench-report/ unless
# --out says otherwise; the tables are printed too. Every process the run
# starts (servers, engines, load processes) is stopped by it.
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
    *" --mode single "*|*" --mode=single "*) ;;
    *)
        # The cluster runs its own Redis, MariaDB and broker; only the
        # programs must be installed.
        if ! command -v redis-server >/dev/null || ! command -v mariadbd >/dev/null; then
            ./scripts/ensure-services.sh >/dev/null
        fi
        IM_TANSU_BIN="$(./scripts/kafka.sh install | tail -1)"
        export IM_TANSU_BIN
        ;;
esac
cargo build --release --locked -p im-server -p im-bench
exec target/release/im-bench --server-bin target/release/im-server "$@"
