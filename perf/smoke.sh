#!/usr/bin/env bash
# perf/smoke.sh URL [SB-LOAD FLAGS...]: a ~5 s load check against a running
# server, for CI. 200 connections in 10 channels, one publisher each at
# 50 msg/s (1 s warm-up, 3 s window); exits non-zero when a connection failed
# or any message was lost, duplicated or reordered.
#   perf/smoke.sh ws://127.0.0.1:8080/ws --server-pid "$PID"
# SB_LOAD=path/to/sb-load uses a prebuilt binary instead of `cargo run`.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: perf/smoke.sh URL [sb-load flags]" >&2; exit 2; }
url="$1"; shift
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${SB_LOAD:-}" ]; then
  exec "$SB_LOAD" --scenario smoke --url "$url" --assert-no-loss --drain 2 "$@"
fi
exec cargo run --release -q -p sb-load -- --scenario smoke --url "$url" --assert-no-loss --drain 2 "$@"
