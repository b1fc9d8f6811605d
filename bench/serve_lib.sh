# Sourced by the bench scripts that talk to a running `autonomy serve`.
# start_serve BIN DIR: serves $AUTONOMY_CONFIG/$AUTONOMY_DATABASE on a free loopback port, in the
# background; sets SERVER (its pid) and ADDRESS (http://127.0.0.1:PORT) once it listens.
start_serve() {
  "$1" serve --listen 127.0.0.1:0 2> "$2/serve.log" &
  SERVER=$!
  for _ in $(seq 1 100); do grep -q "listening on" "$2/serve.log" && break; sleep 0.1; done
  ADDRESS=$(sed -n 's/.*listening on \(https\{0,1\}:[^ ]*\).*/\1/p' "$2/serve.log" | head -1)
  [ -n "$ADDRESS" ] || { echo "serve did not start: $(cat "$2/serve.log")" >&2; return 1; }
}
