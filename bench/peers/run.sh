#!/usr/bin/env bash
# Makes a venv with the peer queues from PyPI (once, in bench/peers/.venv), then runs
# bench/peers/peers.py against the release binary: the same work on every queue, in one run.
#   bench/peers/run.sh [BINARY] [--tasks N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-$here/../../.build-static/release/autonomy}
shift || true
venv=$here/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q huey==3.5.4 litequeue==0.9 persist-queue==1.1.0 matplotlib
fi
exec "$venv/bin/python" "$here/peers.py" --binary "$binary" --python "$venv/bin/python" "$@"
