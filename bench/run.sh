#!/usr/bin/env bash
# Builds autonomy the way the README installs it (release, static Swift runtime) and runs every
# benchmark. Not a test: it prints figures and ratios against baselines measured in the same run.
# Usage: bench/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=.build-static   # its own build folder, so the debug build in .build is left alone
make --no-print-directory build BUILD_DIR="$scratch" >&2
bin="$scratch/release/autonomy"
# The queue: enqueue, batch, drain, start-up, a large ledger, the audit.
python3 bench/queue_bench.py --binary "$bin" "$@"
# The peers (huey, persist-queue, litequeue from PyPI, in bench/peers/.venv) on the same work.
bench/peers/run.sh "$bin" $([ "${1:-}" = "--quick" ] && echo "--tasks 500")
# Where a drained task's time goes, by the scheduler's events, beside the floor (needs perf and root).
if command -v perf >/dev/null && [ "$(id -u)" = 0 ]; then
  python3 bench/drain_timeline.py --binary "$bin" $([ "${1:-}" = "--quick" ] && echo "--tasks 200")
fi
# The dashboard's pages on 100,000 tasks and 1,000,000 ledger rows.
python3 bench/dashboard_bench.py "$bin"
# PostgreSQL beside SQLite: 1, 2 and 4 workers; the claim at 1,000,000 queued (needs postgresql).
if command -v psql >/dev/null; then
  python3 bench/postgres_bench.py --binary "$bin" $([ "${1:-}" = "--quick" ] && echo "--tasks 500 --deep 100000")
fi
