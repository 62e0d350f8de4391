defmodule Erlnode.MigrationStressTest do
  # Opt-in (excluded by default): many hops under a flood of deposits, to
  # measure how often the residual reordering window of docs/handoff.md is
  # hit and what a hop costs under load. Run from erlang/ with
  #   ERL_EPMD_PORT=$(../scripts/free-port) ERLNODE_BIN=../target/debug/erlnode \
  #     MIX_ENV=test mix test --only stress
  # HOPS (default 100) and SETTLE (ms, default: the library's) tune it.
  use ExUnit.Case, async: false

  alias Erlnode.Migration
  alias Erlnode.MigrationSupport, as: MS
  alias Erlnode.TestSupport, as: TS

  @moduletag :stress
  @moduletag :capture_log
  @moduletag timeout: 600_000

  test "many hops under a flood: report anomalies and hop latency" do
    erl = TS.start_erlnode()
    MS.ensure_registered(erl)
    MS.no_placement_on_join()
    peer = MS.start_peer()
    {a, b} = {node(), peer.node}
    name = String.to_atom(TS.unique("stress"))
    hops = String.to_integer(System.get_env("HOPS", "100"))

    opts =
      case System.get_env("SETTLE", "") do
        "" -> []
        s -> [settle: String.to_integer(s)]
      end

    {:ok, _} = Migration.start_process("account", %{}, name, opts)
    on_exit(fn -> (pid = :global.whereis_name(name)) |> is_pid() && Process.exit(pid, :shutdown) end)

    me = self()
    kinds = [:global_cast, :global_send, :global_call, :pid_cast, :pid_send, :pid_call]
    local = for k <- kinds, do: {"a_#{k}", MS.spawn_sender("a_#{k}", k, name, me)}

    remote =
      for k <- [:global_cast, :pid_send, :global_call],
          do: {"b_#{k}", :erpc.call(b, MS, :spawn_sender, ["b_#{k}", k, name, me])}

    times =
      for i <- 1..hops do
        target = if rem(i, 2) == 1, do: b, else: a
        mode = if rem(div(i, 2), 2) == 0, do: :hot, else: :cold
        t0 = System.monotonic_time(:microsecond)
        {:ok, _} = Migration.migrate(name, target, mode: mode)
        dt = System.monotonic_time(:microsecond) - t0
        Process.sleep(50)
        dt
      end

    senders = local ++ remote
    for {_, p} <- senders, do: send(p, :stop)

    reports =
      for {id, _} <- senders, into: %{} do
        receive do
          {:sender_done, ^id, r} -> {id, r}
        end
      end

    total = reports |> Map.values() |> Enum.map(& &1.sent) |> Enum.sum()
    Process.sleep(1_000)
    state = GenServer.call({:global, name}, :get)
    sorted = Enum.sort(times)
    kinds = state.anomalies |> Enum.map(&{&1.kind, &1.sender}) |> Enum.frequencies()

    IO.puts(
      "\nstress: #{hops} hops, #{total} deposits, applied #{state.applied}, " <>
        "anomalies #{inspect(kinds)}, hop p50 #{Enum.at(sorted, div(hops, 2))} us, " <>
        "p90 #{Enum.at(sorted, div(hops * 9, 10))} us"
    )

    assert state.applied == total
    assert state.anomalies == []
    assert reports |> Map.values() |> Enum.all?(&(&1.failures == []))
  end
end
