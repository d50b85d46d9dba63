#!/usr/bin/env bash
# perf/scenarios/bigroom.sh [SB-LOAD FLAGS...]: the `bigroom` scenario against a running
# server at $URL (default ws://127.0.0.1:8080/ws).
# Add --server-pid PID for the server's memory and CPU figures; see perf/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
urls=(--url "${URL:-ws://127.0.0.1:8080/ws}")

exec cargo run --release -q -p sb-load -- --scenario bigroom "${urls[@]}" "$@"
