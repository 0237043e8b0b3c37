#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test of the workspace.
# The single-node suite starts its servers in-process on port 0; the backend
# tests of the cluster mode need a real Redis and MariaDB, which the
# ensure-* scripts install (Debian packages) and start when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi

echo "== services"
./scripts/ensure-services.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast >"$log" 2>&1 || status=$?
# Everything but the long list of passing test names.
grep -vE '^test .* \.\.\. ok$' "$log" || true
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
