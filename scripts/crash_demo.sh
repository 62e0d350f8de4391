#!/usr/bin/env bash
# `make demo-crash`: accounts with one synchronous replica each survive
# SIGKILLs of the nodes that host them. Starts, on loopback:
#   epmd        `erlnode epmd` (its own process: it must outlive the kills)
#   rust1..3    erlnode run --replicas 1, each starting DEMO_ACCOUNTS accounts
#   ex_crash    an Elixir node running erlang/demo/crash_demo.exs, which
#               starts DEMO_ACCOUNTS accounts of its own, sends deposits
#               with synchronous calls from DEMO_SENDERS senders, SIGKILLs
#               rust2 mid-run and, once every account has a replica again,
#               rust3; then compares every acknowledged deposit with the
#               final states and prints `VERDICT: OK` or `VERDICT: FAIL - ...`.
# Every node runs --no-rebalance-on-join so only failover moves accounts.
# Stops everything it started, by pid, on exit (also on failure); shows
# the erlnode logs on failure. Exit status: the Elixir script's.
#
# Env: ERLNODE_BIN, ERLNODE_EX_EBIN, DEMO_EPMD_PORT, DEMO_ACCOUNTS
# (per node, default 25), DEMO_SENDERS (default 8), DEMO_PHASE_MS (default
# 2000, traffic between events), DEMO_REPLICA_MODE (sync | async).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ERLNODE_BIN:-$ROOT/target/release/erlnode}
EBIN=${ERLNODE_EX_EBIN:-$ROOT/erlang/_build/dev/lib/erlnode_ex/ebin}
COOKIE=crash_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
ACCOUNTS=${DEMO_ACCOUNTS:-25}
MODE=${DEMO_REPLICA_MODE:-sync}
EX_NODE=ex_crash@127.0.0.1
LOGDIR=$(mktemp -d -t erlnode-crash.XXXXXX)
EPMD_PID=
RUST_PIDS=()
RUST_NAMES=()
ELIXIR_PID=

PORT=${DEMO_EPMD_PORT:-$("$ROOT/scripts/free-port")}

# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
check_demo_tools demo-crash "$BIN" "$EBIN" || exit 1

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_pid "$ELIXIR_PID"
  for pid in "${RUST_PIDS[@]}"; do stop_pid "$pid"; done
  stop_pid "$EPMD_PID"
  if [ "$status" != 0 ]; then
    for f in "$LOGDIR"/rust*.log; do
      [ -s "$f" ] || continue
      echo; echo "--- $(basename "$f") (last 20 lines) ---"; tail -n 20 "$f"
    done
    echo; echo "make demo-crash: FAILED (exit $status)"
  fi
  rm -rf "$LOGDIR"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$BIN" epmd --port "$PORT" >"$LOGDIR/epmd.log" 2>&1 </dev/null &
EPMD_PID=$!
for _ in $(seq 100); do  # up to 10 s for the EPMD to listen
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$EPMD_PID" 2>/dev/null || { echo "demo-crash: erlnode epmd exited" >&2; cat "$LOGDIR/epmd.log" >&2; exit 1; }
  sleep 0.1
done

for i in 1 2 3; do
  name=rust${i}_crash@127.0.0.1
  args=(run --name "$name" --cookie "$COOKIE" --epmd-port "$PORT" --no-embedded-epmd
        --no-rebalance-on-join --replicas 1 --replica-mode "$MODE")
  [ "$i" != 1 ] && args+=(--connect "${RUST_NAMES[0]}")
  for a in $(seq "$ACCOUNTS"); do args+=(--start-account "r${i}_acct_$a"); done
  NO_COLOR=1 "$BIN" "${args[@]}" >"$LOGDIR/rust$i.log" 2>&1 </dev/null &
  RUST_PIDS+=($!)
  RUST_NAMES+=("$name")
  wait_ready "$!" "$LOGDIR/rust$i.log" "$name"
done
echo "Started ${RUST_NAMES[*]} (replicas: 1, $MODE), $ACCOUNTS accounts each; EPMD on 127.0.0.1:$PORT"

ERL_EPMD_PORT=$PORT DEMO_REPLICA_MODE=$MODE elixir \
  --erl "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}" \
  --name "$EX_NODE" --cookie "$COOKIE" -pa "$EBIN" \
  "$ROOT/erlang/demo/crash_demo.exs" "$ACCOUNTS" \
  "${RUST_NAMES[0]}=${RUST_PIDS[0]}" "${RUST_NAMES[1]}=${RUST_PIDS[1]}" "${RUST_NAMES[2]}=${RUST_PIDS[2]}" </dev/null &
ELIXIR_PID=$!
set +e
wait "$ELIXIR_PID"
status=$?
set -e
ELIXIR_PID=
exit "$status"
