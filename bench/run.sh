#!/usr/bin/env bash
# Builds autonomy in release mode and runs the queue benchmarks. Not a test: it prints figures.
# Usage: bench/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release >&2
exec python3 bench/queue_bench.py --binary "$(swift build -c release --show-bin-path)/autonomy" "$@"
