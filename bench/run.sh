#!/usr/bin/env bash
# Builds autonomy the way the README installs it (release, static Swift runtime) and runs the
# queue benchmarks. Not a test: it prints figures and ratios against baselines measured in the
# same run. Usage: bench/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=.build-static   # its own build folder, so the debug build in .build is left alone
swift build -c release --static-swift-stdlib --scratch-path "$scratch" >&2
exec python3 bench/queue_bench.py --binary "$(swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)/autonomy" "$@"
