#!/usr/bin/env bash
# The whole test suite, as CI runs it: tools, formatting, lints, then every test.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/prereqs.sh
tools_bin=$(bash scripts/install-tools.sh)
export PATH="$tools_bin:$PATH"

# Multi-node and many-cluster tests hold many sockets at once.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

# A one-off build gains nothing from incremental state, which doubles the disk it takes.
if [ "${CI:-}" = "true" ]; then
  export CARGO_INCREMENTAL=0
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast "$@"
