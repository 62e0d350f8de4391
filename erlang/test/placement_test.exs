defmodule Erlnode.PlacementTest do
  # Placement between this VM and :peer nodes: a node joining takes the
  # processes the ring gives it, a node stopping its application drains
  # to the remaining owners, and rebalance evens out counts. The erlnode
  # started for the module only serves EPMD (--no-migration: it is no
  # member, so the rings are over the Elixir nodes only). Not async:
  # peers share the one EPMD port.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias Erlnode.Migration
  alias Erlnode.Migration.Ring
  alias Erlnode.MigrationSupport, as: MS
  alias Erlnode.TestSupport, as: TS

  @moduletag :capture_log
  @moduletag timeout: 90_000

  @n 200

  setup_all do
    erl = TS.start_erlnode(args: ["--no-migration"])
    MS.ensure_registered(erl)
    :ok
  end

  # `count` names, unique to the test; their processes are killed at exit.
  defp names(prefix, count) do
    base = TS.unique(prefix)
    names = for i <- 1..count, do: String.to_atom("#{base}_#{i}")
    kill_on_exit(names)
  end

  # on_exit callbacks run last registered first: call again after
  # starting a node whose stop would otherwise drain them somewhere.
  defp kill_on_exit(names) do
    on_exit(fn ->
      for name <- names do
        case :global.whereis_name(name) do
          # :shutdown, not :kill: Erlnode.ProcessSupervisor restarts a
        # :transient process that is killed
        pid when is_pid(pid) -> Process.exit(pid, :shutdown)
          _ -> :ok
        end
      end
    end)

    names
  end

  defp hosted_here(names) do
    set = MapSet.new(names)
    for {name, "account"} <- Migration.hosted(), name in set, do: name
  end

  defp where(name) do
    case :global.whereis_name(name) do
      pid when is_pid(pid) -> node(pid)
      :undefined -> nil
    end
  end

  defp await(fun, timeout \\ 20_000) do
    cond do
      fun.() -> true
      timeout <= 0 -> false
      true -> Process.sleep(50) && await(fun, timeout - 50)
    end
  end

  defp start_peer, do: MS.start_peer(app_env: [rebalance_on_join: true])

  # Waits until this VM's manager knows the peer hosts "account".
  defp await_member(peer_node) do
    assert await(fn -> peer_node in Migration.members("account") end),
           "#{peer_node} never announced account"
  end

  # Every account's balance is its index, plus one deposit applied.
  defp assert_states(names) do
    for {name, i} <- Enum.with_index(names, 1) do
      state = GenServer.call({:global, name}, :get)
      assert state.balance == i + 1, "#{name}: #{inspect(state)}"
      assert state.applied == 1
      assert state.anomalies == []
    end
  end

  defp deposit_each(names) do
    for name <- names, do: {:ok, _} = GenServer.call({:global, name}, {:deposit, "t", 1, 1})
  end

  test "join: the processes the ring gives the newcomer move there, and only those" do
    names = names("join", @n)

    pids =
      for {name, i} <- Enum.with_index(names, 1), into: %{} do
        {:ok, pid} = Migration.start_process("account", %{balance: i}, name)
        {name, pid}
      end

    deposit_each(names)

    log =
      capture_log(fn ->
        peer = start_peer()
        Process.put(:peer, peer)
        await_member(peer.node)
        assert Migration.members("account") == Enum.sort([node(), peer.node])

        ring = Ring.new([node(), peer.node])
        {theirs, ours} = Enum.split_with(names, &(Ring.owner(ring, &1) == peer.node))
        assert length(theirs) > @n / 4 and length(ours) > @n / 4, "ring share #{length(theirs)}"

        assert await(fn -> Enum.all?(theirs, &(where(&1) == peer.node)) end),
               "not moved: #{inspect(Enum.reject(theirs, &(where(&1) == peer.node)))}"

        Process.put(:split, {theirs, ours})
        # the placement task logs its last progress line right after the
        # last result (which follows the name switch): give it a moment
        assert await(fn -> length(hosted_here(names)) == length(ours) end)
        Process.sleep(500)
      end)

    peer = Process.get(:peer)
    {theirs, ours} = Process.get(:split)

    # the others never moved: same pids as at the start
    for name <- ours, do: assert(:global.whereis_name(name) == pids[name], "#{name} moved")

    hosted_there = Migration.hosted(peer.node) |> Enum.map(&elem(&1, 0)) |> MapSet.new()
    assert MapSet.subset?(MapSet.new(theirs), hosted_there)
    assert_states(names)

    assert log =~ "join: moving processes total=#{length(theirs)}"
    assert log =~ "join: progress done=#{length(theirs)} total=#{length(theirs)} failed=0"
  end

  test "drain: stopping the application moves every process to the remaining owners" do
    peer = start_peer()
    await_member(peer.node)
    names = names("drain", @n)

    for {name, i} <- Enum.with_index(names, 1) do
      {:ok, pid} =
        :erpc.call(peer.node, Migration, :start_process, ["account", %{balance: i}, name])

      assert node(pid) == peer.node
    end

    deposit_each(names)
    assert length(Migration.hosted(peer.node)) == @n

    # Application.stop returns once the manager's terminate/2 has drained
    assert :ok = :erpc.call(peer.node, Application, :stop, [:erlnode_ex], 60_000)

    for name <- names, do: assert(where(name) == node(), "#{name} on #{inspect(where(name))}")
    assert_states(names)
    assert length(hosted_here(names)) == @n
    # the leaving node told this one it no longer hosts anything
    assert await(fn -> Migration.members("account") == [node()] end)
  end

  test "System.stop on a node drains before it exits" do
    peer = start_peer()
    await_member(peer.node)
    names = names("sysstop", 30)

    for {name, i} <- Enum.with_index(names, 1),
        do:
          {:ok, _} =
            :erpc.call(peer.node, Migration, :start_process, ["account", %{balance: i}, name])

    deposit_each(names)
    true = Node.monitor(peer.node, true)
    :ok = :erpc.call(peer.node, System, :stop, [])
    assert_receive {:nodedown, node}, 30_000
    assert node == peer.node

    for name <- names, do: assert(where(name) == node(), "#{name} on #{inspect(where(name))}")
    assert_states(names)
  end

  test "a drain out of time reports what did not move; nothing is lost" do
    peer = start_peer()
    await_member(peer.node)
    names = names("drainto", 40)

    for {name, i} <- Enum.with_index(names, 1),
        do:
          {:ok, _} =
            :erpc.call(peer.node, Migration, :start_process, ["account", %{balance: i}, name])

    deposit_each(names)
    # (how many make it in 10 ms depends on the machine)
    report = :erpc.call(peer.node, Migration, :drain, [[timeout: 10]])
    assert report.moved + length(report.failed) == 40
    assert Enum.all?(report.failed, &match?({_, :drain_timeout}, &1))

    # moves cut short completed or rolled back: every account is still
    # registered, with its state; a second drain moves the rest
    assert await(fn -> Enum.all?(names, &(where(&1) in [node(), peer.node])) end)
    assert %{failed: [], unplaced: []} = :erpc.call(peer.node, Migration, :drain, [])
    assert await(fn -> Enum.all?(names, &(where(&1) == node())) end)
    assert_states(names)
  end

  test "the supervisor gives the manager time to drain" do
    assert %{shutdown: 65_000} = Migration.child_spec([])
    assert %{shutdown: 6_000} = Migration.child_spec(drain_timeout: 1_000)
  end

  test "drain/1 returns a report; unplaced processes stay" do
    peer = start_peer()
    await_member(peer.node)
    [a, b, c] = names("drain1", 3)
    {:ok, _} = :erpc.call(peer.node, Migration, :start_process, ["account", %{balance: 1}, a])
    {:ok, _} = :erpc.call(peer.node, Migration, :start_process, ["account", %{balance: 2}, b])

    {:ok, _} = :erpc.call(peer.node, Migration, :start_process, [MS.PeerOnly, nil, c])

    assert %{moved: 2, failed: [], unplaced: [^c]} = :erpc.call(peer.node, Migration, :drain, [])
    assert where(a) == node() and where(b) == node() and where(c) == peer.node
    assert GenServer.call({:global, b}, :get).balance == 2
  end

  test "mixed cluster: a Rust node and Elixir nodes agree on every owner (join, join, drain)" do
    e_names = names("mixe", 80)
    r_names = names("mixr", 60)

    for {name, i} <- Enum.with_index(e_names, 1),
        do: {:ok, _} = Migration.start_process("account", %{balance: i}, name)

    # a Rust node hosting accounts of its own (its EPMD is the module's)
    accounts = Enum.flat_map(r_names, &["--start-account", Atom.to_string(&1)])
    rust = TS.start_erlnode(cookie: Node.get_cookie(), args: ["--no-embedded-epmd" | accounts])
    # killed before the Rust node gets its SIGTERM (it would drain them here)
    kill_on_exit(e_names ++ r_names)

    TS.poll_until(rust, "ready", 15_000, fn ->
      {lines, _} = TS.output(rust)
      Enum.any?(lines, &(&1 =~ "ready"))
    end)

    # Connecting: each side learns the other hosts "account" and moves
    # what the ring now gives the other (Rust ring on one side, Elixir
    # ring on the other).
    TS.assert_pong(rust)
    all = e_names ++ r_names
    owners_ok = fn ring -> Enum.all?(all, &(where(&1) == Ring.owner(ring, &1))) end
    misplaced = fn ring -> Enum.reject(all, &(where(&1) == Ring.owner(ring, &1))) end

    ring2 = Ring.new([node(), rust.node])

    assert await(fn -> owners_ok.(ring2) end),
           "not on their owner: #{inspect(misplaced.(ring2))}\n#{TS.describe(rust)}"

    assert Enum.any?(e_names, &(where(&1) == rust.node)), "Elixir -> Rust moves"
    assert Enum.any?(r_names, &(where(&1) == node())), "Rust -> Elixir moves"
    assert rust.node in Migration.members("account")

    for name <- all, do: {:ok, _} = GenServer.call({:global, name}, {:deposit, "t", 1, 1})

    # an Elixir peer joins: both the Rust node and this VM give it its share
    peer = start_peer()
    ring3 = Ring.new([node(), rust.node, peer.node])

    assert await(fn -> owners_ok.(ring3) end),
           "not on their owner: #{inspect(misplaced.(ring3))}\n#{TS.describe(rust)}"

    assert Enum.any?(r_names, &(where(&1) == peer.node)), "Rust -> peer moves"

    # the peer leaves: its processes go to their owners among the rest,
    # the Rust node included
    assert :ok = :erpc.call(peer.node, Application, :stop, [:erlnode_ex], 60_000)

    assert await(fn -> owners_ok.(ring2) end),
           "not on their owner: #{inspect(misplaced.(ring2))}"

    for {name, i} <- Enum.with_index(e_names, 1) do
      state = GenServer.call({:global, name}, :get)
      assert {state.balance, state.applied, state.anomalies} == {i + 1, 1, []}, "#{name}"
    end

    for name <- r_names do
      state = GenServer.call({:global, name}, :get)
      assert {state.balance, state.applied, state.anomalies} == {1, 1, []}, "#{name}"
    end
  end

  test "rebalance evens out counts from the most to the least loaded node" do
    peer = start_peer()
    await_member(peer.node)
    names = names("rebal", 60)
    here = Enum.take(names, 50)

    for {name, i} <- Enum.with_index(names, 1) do
      args = ["account", %{balance: i}, name]

      {:ok, _} =
        if name in here,
          do: apply(Migration, :start_process, args),
          else: :erpc.call(peer.node, Migration, :start_process, args)
    end

    deposit_each(names)
    count = fn n -> Enum.count(names, &(where(&1) == n)) end
    {c1, c2} = {count.(node()), count.(peer.node)}
    assert c1 + c2 == 60

    assert Migration.rebalance("account") == {:ok, div(abs(c1 - c2), 2)}
    assert abs(count.(node()) - count.(peer.node)) <= 1
    assert_states(names)

    # balanced: nothing to do (the wire call Rust nodes answer too)
    assert GenServer.call(:erlnode_migration, {:"$erlnode_migrate", :rebalance, "account"}) ==
             {:ok, 0}

    assert Migration.rebalance("no_such_type") == {:ok, 0}
  end
end
