# Shared by the demo scripts (sourced, not run).

stop_pid() {  # stop_pid PID: SIGTERM, wait up to 5 s, then SIGKILL
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

wait_ready() {  # wait_ready PID LOG WHAT: up to 30 s for an erlnode's `ready` line
  local pid=$1 log=$2 what=$3
  for _ in $(seq 300); do
    grep -qs " ready " "$log" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$what exited before it was ready" >&2; return 1; }
    sleep 0.1
  done
  echo "$what did not log 'ready' within 30 s" >&2
  return 1
}

check_demo_tools() {  # check_demo_tools WHAT BIN EBIN: erl, elixir, the erlnode binary, the compiled library
  local what=$1 bin=$2 ebin=$3 tool
  for tool in erl elixir; do
    command -v "$tool" >/dev/null || { echo "$what: $tool not found: run \`make deps\`" >&2; return 1; }
  done
  [ -x "$bin" ] || { echo "$what: $bin not found: run \`make build\`" >&2; return 1; }
  [ -f "$ebin/erlnode_ex.app" ] || { echo "$what: $ebin/erlnode_ex.app not found: run \`make demo-lib\`" >&2; return 1; }
}
