#!/usr/bin/env bash
# perf/scenarios/multinode.sh [SB-LOAD FLAGS...]: the `multinode` scenario against a running
# server at $URL (default ws://127.0.0.1:8080/ws; multinode wants URL2 too: publishers on URL, receivers on URL2).
# Add --server-pid PID for the server's memory and CPU figures; see perf/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
urls=(--url "${URL:-ws://127.0.0.1:8080/ws}")
urls+=(--url "${URL2:?multinode needs URL2}")
exec cargo run --release -q -p sb-load -- --scenario multinode "${urls[@]}" "$@"
