#!/usr/bin/env bash
# Runs schemathesis (from PyPI) against a running `autonomy serve`, with a producer's token, over
# the API that openapi.yaml describes, and prints what it found.
#
#   bench/schemathesis.sh [BINARY]      (default: .build/debug/autonomy; pip install schemathesis)
set -euo pipefail
BIN=${1:-.build/debug/autonomy}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(mktemp -d /tmp/autonomy-schemathesis-XXXXXX)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$DIR"' EXIT
cat > "$DIR/autonomy.json" <<'JSON'
{"version": 1,
 "producers": {"users": {"fuzzer": {"types": ["report", "send_email"], "max_per_hour": 100000}}},
 "task_types": {
   "report": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}},
   "send_email": {"safety": "dangerous", "handler": {"exec": {"argv": ["/bin/true"]}},
                  "verify": [{"command": {"argv": ["/bin/true"]}}]}
 }}
JSON
export AUTONOMY_CONFIG="$DIR/autonomy.json" AUTONOMY_DATABASE="$DIR/autonomy.db"
TOKEN=$("$BIN" producer token fuzzer 2>/dev/null)
. "$(dirname "$0")/serve_lib.sh"
start_serve "$BIN" "$DIR"
echo "serve at $ADDRESS"
# Producer routes with a producer's token; every answer must be in the document, with its
# documented status and shape, and no 5xx.
schemathesis run "$ROOT/openapi.yaml" --url "$ADDRESS" \
    --header "Authorization: Bearer $TOKEN" \
    --checks all --max-examples "${EXAMPLES:-100}" --workers 1 \
    --include-path-regex '^/api/v1/tasks' "${@:2}"
