#!/usr/bin/env bash
# Build flotilla and run `flotilla dev`: three nodes, a simulated Kubernetes cluster and a Git
# server with example applications, all on this machine. Arguments go to `flotilla dev`
# (try --help). Ctrl-C stops everything; the next run resumes from .flotilla-dev/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/prereqs.sh
tools_bin=$(bash scripts/install-tools.sh)
export PATH="$tools_bin:$PATH"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --locked -p flotilla-node
exec target/release/flotilla dev "$@"
