# Demo: a live account hops between two Rust (erlnode) nodes and this
# Elixir node while senders keep depositing into it; at the end the
# account's own audit says whether a deposit was lost, duplicated or
# applied out of order.
#
# Run by scripts/migration_demo.sh (`make demo`), which starts the two
# erlnode nodes (the first one hosting the account `demo_account`) and then:
#   ERL_EPMD_PORT=<port> elixir --erl "-start_epmd false" \
#     --name ex_demo@127.0.0.1 --cookie <cookie> -pa <erlnode_ex ebin> \
#     erlang/demo/migration_demo.exs RUST1 RUST2 [ACCOUNT]
#
# Env: DEMO_ROUNDS (default 2; a round is the hops RUST1 -> here -> RUST2 -> RUST1),
# DEMO_SENDERS (default 4), DEMO_HOP_INTERVAL_MS (default 400, traffic between hops).
#
# Exits 0 on "VERDICT: OK", 1 otherwise.

defmodule MigrationDemo do
  @deadline_ms 15_000

  def env_int(var, default) do
    case System.get_env(var) do
      nil -> default
      s -> String.to_integer(s)
    end
  end

  def fail(msg) do
    IO.puts("")
    IO.puts("VERDICT: FAIL - #{msg}")
    System.halt(1)
  end

  def now_ms, do: System.monotonic_time(:microsecond) / 1000

  @doc "Polls `fun` until it returns a truthy value or `timeout` ms pass."
  def wait_until(fun, timeout \\ @deadline_ms) do
    deadline = System.monotonic_time(:millisecond) + timeout
    do_wait_until(fun, deadline)
  end

  defp do_wait_until(fun, deadline) do
    case fun.() do
      v when v not in [nil, false] ->
        v

      _ ->
        if System.monotonic_time(:millisecond) >= deadline do
          nil
        else
          Process.sleep(50)
          do_wait_until(fun, deadline)
        end
    end
  end

  def short(node), do: node |> Atom.to_string() |> String.split("@") |> hd()

  def kind(node) do
    if node == node(), do: "Elixir", else: "Rust"
  end

  @doc """
  A sender: deposits `{:deposit, id, seq, 1}` numbered 1, 2, 3... until
  told to stop, alternating cast / call / plain send. `:name` senders
  address `{:global, account}` every time; `:pid` senders cache the pid
  and, every 50 deposits, make one call through it (a barrier: everything
  they sent it has been applied) before looking the name up again, as
  docs/handoff.md prescribes for switching to a new pid.
  """
  def sender(id, account, mode, parent) do
    spawn_link(fn ->
      send(parent, {:sender_ready, id})
      sender_loop(id, account, mode, 1, :global.whereis_name(account))
    end)
  end

  defp sender_loop(id, account, mode, seq, pid) do
    receive do
      {:stop, from} -> send(from, {:sender_done, id, seq - 1})
    after
      0 ->
        msg = {:deposit, id, seq, 1}
        target = if mode == :name, do: {:global, account}, else: pid

        case rem(seq, 3) do
          0 ->
            {:ok, _balance} = GenServer.call(target, msg, 30_000)
            # Traffic, not a flood: about a thousand deposits a second per sender.
            Process.sleep(2)

          1 ->
            GenServer.cast(target, msg)

          2 ->
            if mode == :name, do: :global.send(account, msg), else: send(pid, msg)
        end

        pid =
          if mode == :pid and rem(seq, 50) == 0 do
            _ = GenServer.call(pid, :get, 30_000)
            :global.whereis_name(account)
          else
            pid
          end

        sender_loop(id, account, mode, seq + 1, pid)
    end
  end

  @doc "Fails if a sender crashed (a call that failed, for instance)."
  def check_senders do
    receive do
      {:EXIT, pid, reason} when reason != :normal ->
        fail("sender #{inspect(pid)} crashed: #{inspect(reason, limit: 20)}")
    after
      0 -> :ok
    end
  end

  def get(account), do: GenServer.call({:global, account}, :get, 10_000)
end

{rust1, rust2, account} =
  case System.argv() do
    [r1, r2, acct | _] -> {String.to_atom(r1), String.to_atom(r2), String.to_atom(acct)}
    [r1, r2] -> {String.to_atom(r1), String.to_atom(r2), :demo_account}
    _ -> {:"rust1_demo@127.0.0.1", :"rust2_demo@127.0.0.1", :demo_account}
  end

rounds = max(MigrationDemo.env_int("DEMO_ROUNDS", 2), 1)
n_senders = max(MigrationDemo.env_int("DEMO_SENDERS", 4), 1)
interval = MigrationDemo.env_int("DEMO_HOP_INTERVAL_MS", 400)
me = node()

Logger.configure(level: :warning)
Process.flag(:trap_exit, true)
{:ok, _} = Application.ensure_all_started(:erlnode_ex)

IO.puts("Cluster (loopback, embedded EPMD served by #{rust1}):")

for {n, what} <- [
      {rust1, "Rust, erlnode run --start-account #{account}"},
      {rust2, "Rust, erlnode run"}
    ] do
  case Erlnode.wait_for_pong(n, 15_000) do
    :pong -> IO.puts("  #{String.pad_trailing(Atom.to_string(n), 24)} #{what}")
    :pang -> MigrationDemo.fail("#{n} does not answer Node.ping")
  end
end

IO.puts(
  "  #{String.pad_trailing(Atom.to_string(me), 24)} Elixir, this script (migration manager: :erlnode_migration)"
)

:ok = :global.sync()

home =
  MigrationDemo.wait_until(fn ->
    case :global.whereis_name(account) do
      pid when is_pid(pid) -> pid
      :undefined -> nil
    end
  end)

home || MigrationDemo.fail("{:global, #{inspect(account)}} is not registered")

# Every node's migration manager must answer before the first hop to it.
for n <- [rust1, rust2, me] do
  MigrationDemo.wait_until(fn ->
    try do
      is_list(Erlnode.Migration.hosted(n))
    catch
      :exit, _ -> false
    end
  end) || MigrationDemo.fail("no migration manager (:erlnode_migration) answers on #{n}")
end

IO.puts("")

IO.puts(
  "#{inspect(account)} (an Erlnode.Examples.Account / examples::Account) runs on #{node(home)} as #{inspect(home)}"
)

# Senders: half by {:global, name}, half by a cached pid; each alternates
# cast, call and plain send.
senders =
  for i <- 1..n_senders do
    mode = if rem(i, 2) == 1, do: :name, else: :pid
    id = "s#{i}"
    pid = MigrationDemo.sender(id, account, mode, self())

    receive do
      {:sender_ready, ^id} -> :ok
    end

    {id, mode, pid}
  end

described =
  senders
  |> Enum.map(fn {id, mode, _} ->
    "#{id} (#{if mode == :name, do: "{:global, name}", else: "pid"})"
  end)
  |> Enum.join(", ")

IO.puts(
  "#{n_senders} senders on #{me} keep depositing 1 (numbered per sender) by cast, call and send: #{described}"
)

IO.puts("")

Process.sleep(interval)

# Rust -> Elixir -> Rust -> Rust, `rounds` times.
hops = List.duplicate([me, rust2, rust1], rounds) |> List.flatten()

hop_results =
  for {to, i} <- Enum.with_index(hops, 1) do
    from = node(:global.whereis_name(account))
    t0 = MigrationDemo.now_ms()
    result = Erlnode.Migration.migrate(account, to)
    ms = MigrationDemo.now_ms() - t0

    case result do
      {:ok, pid} when node(pid) == to ->
        MigrationDemo.check_senders()
        st = MigrationDemo.get(account)

        where = fn n ->
          String.pad_trailing("#{MigrationDemo.short(n)} (#{MigrationDemo.kind(n)})", 19)
        end

        IO.puts(
          "hop #{i}  #{where.(from)} -> #{where.(to)} #{:io_lib.format("~6.1f", [ms])} ms" <>
            "   now #{inspect(pid)}, #{st.applied} deposits applied so far"
        )

        Process.sleep(interval)
        ms

      other ->
        MigrationDemo.fail(
          "hop #{i} #{from} -> #{to}: Erlnode.Migration.migrate returned #{inspect(other)}"
        )
    end
  end

IO.puts("")

# Stop the traffic; each sender reports the last sequence number it sent.
for {_id, _mode, pid} <- senders, do: send(pid, {:stop, self()})

sent =
  for _ <- senders, into: %{} do
    receive do
      {:sender_done, id, n} ->
        {id, n}

      {:EXIT, pid, reason} when reason != :normal ->
        MigrationDemo.fail("sender #{inspect(pid)} crashed: #{inspect(reason, limit: 20)}")
    after
      30_000 -> MigrationDemo.fail("a sender did not stop")
    end
  end

total = sent |> Map.values() |> Enum.sum()

# Casts and sends may still be in flight: wait until all are applied.
final =
  MigrationDemo.wait_until(
    fn ->
      st = MigrationDemo.get(account)
      if st.applied >= total, do: st, else: nil
    end,
    10_000
  ) || MigrationDemo.get(account)

final_home = :global.whereis_name(account)

IO.puts(
  "Traffic stopped. The account, now on #{node(final_home)}, audits every deposit it applied:"
)

checks =
  for {id, mode, _} <- senders do
    n = Map.fetch!(sent, id)
    got = Map.get(final.last_seq, id, 0)
    ok = got == n
    how = if mode == :name, do: "{:global, name}", else: "pid            "

    IO.puts(
      "  #{id} #{how} sent #{String.pad_leading(Integer.to_string(n), 6)}, last_seq #{String.pad_leading(Integer.to_string(got), 6)}   #{if ok, do: "ok", else: "MISMATCH"}"
    )

    ok
  end

IO.puts("  deposits sent #{total}, applied #{final.applied}, balance #{final.balance}")
IO.puts("  anomalies (gaps, duplicates, reorders): #{inspect(final.anomalies, limit: 10)}")

latencies = Enum.sort(hop_results)
median = Enum.at(latencies, div(length(latencies), 2))

IO.puts(
  "  #{length(hops)} hops, latency min #{:io_lib.format("~.1f", [hd(latencies)])} / median #{:io_lib.format("~.1f", [median])} / max #{:io_lib.format("~.1f", [List.last(latencies)])} ms"
)

IO.puts("")

problems =
  [
    if(Enum.all?(checks),
      do: nil,
      else: "a sender's last_seq differs from the number of deposits it sent"
    ),
    if(final.applied == total,
      do: nil,
      else:
        "#{final.applied} deposits applied for #{total} sent (#{if final.applied < total, do: "lost", else: "duplicated"})"
    ),
    if(final.balance == total, do: nil, else: "balance #{final.balance} != #{total} deposited"),
    if(final.anomalies == [],
      do: nil,
      else:
        "#{length(final.anomalies)} anomalies: #{inspect(Enum.frequencies_by(final.anomalies, & &1.kind))}"
    )
  ]
  |> Enum.reject(&is_nil/1)

if problems == [] do
  IO.puts("VERDICT: OK - nothing lost, nothing duplicated, order per sender kept")
  System.halt(0)
else
  MigrationDemo.fail(Enum.join(problems, "; "))
end
