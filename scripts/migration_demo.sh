#!/usr/bin/env bash
# `make demo`: a live account migrating between Rust and Elixir nodes under
# traffic. Starts, on loopback:
#   rust1_demo  erlnode run --start-account demo_account  (serves the
#               embedded EPMD on a free port: nothing listens there)
#   rust2_demo  erlnode run --connect rust1_demo
#   ex_demo     an Elixir node running erlang/demo/migration_demo.exs, which
#               sends deposits from several senders while the account hops
#               rust1 -> ex_demo -> rust2 -> rust1 (twice), then prints the
#               account's audit and a verdict.
# Both erlnode nodes run with --no-rebalance-on-join, so that only the
# demo's explicit hops move the account (by default a joining node takes
# its share of the placement ring, which could move it on its own).
# Stops everything it started, by pid, on exit; shows the erlnode logs on
# failure. Exit status: the Elixir script's (0 only on "VERDICT: OK").
#
# Env: ERLNODE_BIN (default target/release/erlnode), ERLNODE_EX_EBIN (the
# compiled erlnode_ex library, default erlang/_build/dev/lib/erlnode_ex/ebin),
# DEMO_EPMD_PORT, and DEMO_ROUNDS / DEMO_SENDERS / DEMO_HOP_INTERVAL_MS
# (read by the Elixir script).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ERLNODE_BIN:-$ROOT/target/release/erlnode}
EBIN=${ERLNODE_EX_EBIN:-$ROOT/erlang/_build/dev/lib/erlnode_ex/ebin}
COOKIE=demo_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
ACCOUNT=demo_account
RUST1=rust1_demo@127.0.0.1
RUST2=rust2_demo@127.0.0.1
EX_NODE=ex_demo@127.0.0.1
LOGDIR=$(mktemp -d -t erlnode-demo.XXXXXX)
RUST1_PID=
RUST2_PID=
ELIXIR_PID=

PORT=${DEMO_EPMD_PORT:-$("$ROOT/scripts/free-port")}

# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
check_demo_tools demo "$BIN" "$EBIN" || exit 1

show_logs() {
  local f
  for f in rust1 rust2; do
    [ -s "$LOGDIR/$f.log" ] || continue
    echo
    echo "--- erlnode $f log (last 30 lines) ---"
    tail -n 30 "$LOGDIR/$f.log" | sed "s/^/[$f] /"
  done
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # The Elixir node first, then rust2, then rust1 (it serves EPMD).
  stop_pid "$ELIXIR_PID"
  stop_pid "$RUST2_PID"
  stop_pid "$RUST1_PID"
  if [ "$status" != 0 ]; then
    show_logs
    echo
    echo "make demo: FAILED (exit $status)"
  fi
  rm -rf "$LOGDIR"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "Starting $RUST1 (embedded EPMD on 127.0.0.1:$PORT) with the account $ACCOUNT"
NO_COLOR=1 "$BIN" run --name "$RUST1" --cookie "$COOKIE" --epmd-port "$PORT" --epmd-in-process \
  --start-account "$ACCOUNT" --no-rebalance-on-join >"$LOGDIR/rust1.log" 2>&1 </dev/null &
RUST1_PID=$!
wait_ready "$RUST1_PID" "$LOGDIR/rust1.log" "$RUST1"

echo "Starting $RUST2"
NO_COLOR=1 "$BIN" run --name "$RUST2" --cookie "$COOKIE" --epmd-port "$PORT" --epmd-in-process \
  --connect "$RUST1" --no-rebalance-on-join >"$LOGDIR/rust2.log" 2>&1 </dev/null &
RUST2_PID=$!
wait_ready "$RUST2_PID" "$LOGDIR/rust2.log" "$RUST2"

echo "Starting Elixir node $EX_NODE"
echo

ERL_EPMD_PORT=$PORT elixir \
  --erl "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}" \
  --name "$EX_NODE" --cookie "$COOKIE" -pa "$EBIN" \
  "$ROOT/erlang/demo/migration_demo.exs" "$RUST1" "$RUST2" "$ACCOUNT" </dev/null &
ELIXIR_PID=$!
set +e
wait "$ELIXIR_PID"
status=$?
set -e
ELIXIR_PID=
exit "$status"
