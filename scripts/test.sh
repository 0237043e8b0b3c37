#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of the workspace.
# The single-node suite starts its servers in-process on port 0; the cluster
# tests need a real Redis and MariaDB (the ensure-* scripts install Debian's
# packages and start them when missing), nginx with its stream module, and a
# Kafka-API broker (scripts/kafka.sh builds tansu once into ~/.cache and
# starts it; a broker this script started is stopped at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi

log="$(mktemp)"
started_kafka=0
cleanup() {
    rm -f "$log"
    if [ "$started_kafka" = 1 ]; then ./scripts/kafka.sh stop; fi
}
trap cleanup EXIT

echo "== services"
./scripts/ensure-services.sh
./scripts/ensure-nginx.sh
if ! ./scripts/kafka.sh status >/dev/null 2>&1; then
    started_kafka=1
    ./scripts/kafka.sh start
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
status=0
cargo test --workspace --locked --no-fail-fast >"$log" 2>&1 || status=$?
# Everything but the long list of passing test names.
grep -vE '^test .* \.\.\. ok$' "$log" || true
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
