#!/usr/bin/env bash
# Requests per second for POST /api/v1/tasks (wrk, from Debian), beside the CLI's enqueue, in one
# run on one database folder each.
#
#   bench/serve_bench.sh [BINARY] [SECONDS]   (default: .build-static/release/autonomy, 10 s)
set -euo pipefail
BIN=${1:-.build-static/release/autonomy}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
SECONDS_=${2:-10}
DIR=$(mktemp -d /tmp/autonomy-serve-bench-XXXXXX)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$DIR"' EXIT
cat > "$DIR/autonomy.json" <<'JSON'
{"version": 1,
 "producers": {"users": {"bench": {"types": ["noop"]}}},
 "task_types": {"noop": {"safety": "safe", "handler": {"exec": {"argv": ["/bin/true"]}}}}}
JSON
export AUTONOMY_CONFIG="$DIR/autonomy.json" AUTONOMY_DATABASE="$DIR/http.db"
TOKEN=$("$BIN" producer token bench 2>/dev/null)
. "$(dirname "$0")/serve_lib.sh"
start_serve "$BIN" "$DIR"
cat > "$DIR/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type": "noop", "payload": {"n": 1}}'
LUA
HTTP=$(wrk -t2 -c16 -d"${SECONDS_}s" -s "$DIR/post.lua" "$ADDRESS/api/v1/tasks" | awk '/Requests\/sec/ {print $2}')
CREATED=$(sqlite3 "$DIR/http.db" "SELECT COUNT(*) FROM tasks")
# The CLI, one process per task as a shell script does it, on a database of its own.
export AUTONOMY_DATABASE="$DIR/cli.db"
"$BIN" enqueue noop > /dev/null
START=$(date +%s.%N)
for n in $(seq 1 300); do "$BIN" enqueue noop --payload "{\"n\": $n}" > /dev/null; done
END=$(date +%s.%N)
CLI=$(echo "300 / ($END - $START)" | bc -l)
printf "POST /api/v1/tasks (wrk, 2 threads, 16 connections, %ss): %.0f requests/s, %s tasks created\n" "$SECONDS_" "$HTTP" "$CREATED"
printf "autonomy enqueue, one process per task:                   %.0f tasks/s\n" "$CLI"
printf "ratio HTTP / CLI: %.1fx\n" "$(echo "$HTTP / $CLI" | bc -l)"
