#!/usr/bin/env bash
# `make demo-connect`: starts erlnode (which serves an embedded EPMD on a free
# loopback port) and a local Elixir node that pings it and echoes a handful
# of terms through it. Stops everything it started, by pid, on exit.
#
# Env: ERLNODE_BIN (default target/release/erlnode), DEMO_EPMD_PORT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ERLNODE_BIN:-$ROOT/target/release/erlnode}
PORT=${DEMO_EPMD_PORT:-$("$ROOT/scripts/free-port")}
COOKIE=demo_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
RUST_NODE=rust_demo@127.0.0.1
EX_NODE=ex_demo@127.0.0.1
LOG=$(mktemp -t erlnode-demo.XXXXXX)
ERLNODE_PID=
ELIXIR_PID=

for tool in erl elixir; do
  command -v "$tool" >/dev/null || { echo "demo: $tool not found: run \`make deps\`" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "demo: $BIN not found: run \`make build\`" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_pid "$ELIXIR_PID"
  stop_pid "$ERLNODE_PID"
  if [ -s "$LOG" ]; then
    echo
    echo "--- erlnode log (last 30 lines) ---"
    tail -n 30 "$LOG" | sed 's/^/[erlnode] /'
  fi
  rm -f "$LOG"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "Starting erlnode: $RUST_NODE, embedded EPMD on 127.0.0.1:$PORT"
NO_COLOR=1 "$BIN" run --name "$RUST_NODE" --cookie "$COOKIE" --epmd-port "$PORT" --epmd-in-process >"$LOG" 2>&1 </dev/null &
ERLNODE_PID=$!

up=
for _ in $(seq 300); do  # up to 30 s
  if grep -q "node up" "$LOG"; then up=1; break; fi
  kill -0 "$ERLNODE_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$up" ]; then
  echo "demo: erlnode did not come up (no 'node up' line)" >&2
  exit 1
fi
echo "erlnode is up (os pid $ERLNODE_PID)"
echo "Starting Elixir node $EX_NODE"
echo

ERL_EPMD_PORT=$PORT elixir \
  --erl "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}" \
  --name "$EX_NODE" --cookie "$COOKIE" \
  "$ROOT/erlang/demo/connect_demo.exs" "$RUST_NODE" </dev/null &
ELIXIR_PID=$!
set +e
wait "$ELIXIR_PID"
status=$?
set -e
ELIXIR_PID=
exit "$status"
