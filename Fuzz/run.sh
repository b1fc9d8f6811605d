#!/usr/bin/env bash
# Builds the libFuzzer targets (with AddressSanitizer) and runs each for a while.
# Usage: Fuzz/run.sh [SECONDS_EACH]   (default 120). Crashing inputs land in Fuzz/crashes/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-120}
swift build -c debug --scratch-path .build-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library >&2
bin=$(swift build -c debug --scratch-path .build-fuzz --show-bin-path \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library)
for target in FuzzJSON FuzzConfig FuzzDuration FuzzGateRequest; do
    mkdir -p "corpus/$target" "crashes/$target"
    echo "== $target for ${seconds}s"
    "$bin/$target" "corpus/$target" -max_total_time="$seconds" -max_len=4096 \
        -artifact_prefix="crashes/$target/" -print_final_stats=1 2>&1 |
        grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::new_units_added|==[0-9]+==ERROR|SUMMARY|Done)" || true
    ls "crashes/$target" | sed "s/^/crash: $target\//"
done
