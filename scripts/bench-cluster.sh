#!/usr/bin/env bash
# bench-cluster.sh [ERLNODE BENCH ARGS...]: starts a small cluster on
# loopback (two `erlnode run` nodes and two Elixir nodes running
# erlnode_ex, a private EPMD port), runs `erlnode bench --via` one of the
# Elixir nodes with the given arguments, and stops every node it started
# (by pid), also on failure or Ctrl-C. ELIXIR_NODES=1 starts one Elixir
# node (the `make demo` layout: no Elixir -> Elixir baseline).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ERLNODE_BIN:-$ROOT/target/release/erlnode}
EBIN=${ERLNODE_EX_EBIN:-$ROOT/erlang/_build/test/lib/erlnode_ex/ebin}
PORT=$("$ROOT/scripts/free-port")
COOKIE=bench_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
TAG=$$
LOGDIR=$(mktemp -d -t erlnode-bench.XXXXXX)
PIDS=()

[ -x "$BIN" ] || { echo "bench-cluster: $BIN not found: cargo build --release" >&2; exit 1; }
[ -d "$EBIN" ] || { echo "bench-cluster: $EBIN not found: make elixir-lib" >&2; exit 1; }
. "$ROOT/scripts/lib.sh"

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$LOGDIR"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for() {  # wait_for FILE PATTERN PID
  for _ in $(seq 300); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench-cluster: no '$2' in $1:" >&2; cat "$1" >&2; exit 1
}

# An EPMD of our own on a free port, stopped with the rest.
NO_COLOR=1 "$BIN" epmd --port "$PORT" >"$LOGDIR/epmd" 2>&1 </dev/null &
PIDS+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

ex_nodes=()
for i in $(seq "${ELIXIR_NODES:-2}"); do
  name=bench_ex${i}_$TAG@127.0.0.1
  ERL_EPMD_PORT=$PORT elixir --erl "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}" \
    --name "$name" --cookie "$COOKIE" -pa "$EBIN" \
    -e '{:ok, _} = Application.ensure_all_started(:erlnode_ex); IO.puts("ready"); Process.sleep(:infinity)' \
    >"$LOGDIR/ex$i" 2>&1 </dev/null &
  PIDS+=($!)
  wait_for "$LOGDIR/ex$i" ready $!
  ex_nodes+=("$name")
done
for i in 1 2; do
  NO_COLOR=1 "$BIN" run --name "bench_rust${i}_$TAG@127.0.0.1" --cookie "$COOKIE" --epmd-port "$PORT" \
    --no-embedded-epmd --connect "${ex_nodes[0]}" >"$LOGDIR/rust$i" 2>&1 </dev/null &
  PIDS+=($!)
  wait_for "$LOGDIR/rust$i" ready $!
done
via=${ex_nodes[0]}
# Every node connected to the via node (erlnode run connects, the other
# Elixir node is pinged) before the bench reads the cluster from it.
for n in "${ex_nodes[@]:1}"; do
  ERL_EPMD_PORT=$PORT erl -noshell -start_epmd false -name "bench_ping_$TAG@127.0.0.1" -setcookie "$COOKIE" -hidden \
    -eval "pong = rpc:call('$via', net_adm, ping, ['$n']), halt()." </dev/null
done
"$BIN" bench --via "$via" --cookie "$COOKIE" --epmd-port "$PORT" "$@"
