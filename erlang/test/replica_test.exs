defmodule Erlnode.ReplicaTest do
  # Replicas between this VM and a :peer node: the peer owns accounts
  # with `replicas: 1, replica_mode: :sync` (its node setting for the
  # example type), this VM holds their
  # replicas; the peer's OS process is SIGKILLed and every acknowledged
  # deposit must be in the account this VM restarts, registered once.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias Erlnode.MigrationSupport, as: MS
  alias Erlnode.Replica
  alias Erlnode.TestSupport, as: TS

  @moduletag :capture_log
  @moduletag timeout: 90_000

  setup_all do
    erl = TS.start_erlnode(args: ["--no-migration"])
    MS.ensure_registered(erl)
    :ok
  end

  # Bounded polling: failover has no event this VM could await.
  defp await(fun, timeout \\ 20_000), do: wait(fun, System.monotonic_time(:millisecond) + timeout)

  defp wait(fun, deadline) do
    cond do
      fun.() -> true
      System.monotonic_time(:millisecond) > deadline -> false
      true -> Process.sleep(20) && wait(fun, deadline)
    end
  end

  test "SIGKILL of the owner's node loses no acknowledged call; the replica takes over once" do
    peer = MS.start_peer(app_env: [rebalance_on_join: false, replicas: %{"account" => {1, :sync}}])
    assert MS.await_member(peer.node, "account")
    base = TS.unique("racc")
    names = for i <- 1..8, do: String.to_atom("#{base}_#{i}")

    on_exit(fn ->
      for n <- names, pid = :global.whereis_name(n), is_pid(pid), do: Process.exit(pid, :shutdown)
    end)

    for n <- names do
      assert {:ok, pid} = :erpc.call(peer.node, Erlnode.Migration, :start_process, ["account", %{}, n])
      assert node(pid) == peer.node
    end

    held = fn -> MapSet.new(for {n, _, _, _} <- Replica.held(), do: n) end
    assert await(fn -> Enum.all?(names, &MapSet.member?(held.(), &1)) end), "replicas never arrived"

    acked =
      for n <- names, seq <- 1..25, reduce: %{} do
        acc ->
          {:ok, _} = GenServer.call({:global, n}, {:deposit, "t", seq, 2})
          Map.update(acc, n, 2, &(&1 + 2))
      end

    # An acknowledged cast counts too.
    for n <- names, do: assert(:ok = Replica.cast_acked({:global, n}, {:deposit, "c", 1, 1}))
    acked = Map.new(acked, fn {n, sum} -> {n, sum + 1} end)

    os_pid = :erpc.call(peer.node, :os, :getpid, [])
    {_, 0} = System.cmd("kill", ["-9", to_string(os_pid)])

    assert await(fn ->
             Enum.all?(names, fn n ->
               pid = :global.whereis_name(n)
               is_pid(pid) and node(pid) == node()
             end)
           end),
           "not all accounts failed over"

    for n <- names do
      st = GenServer.call({:global, n}, :get)
      assert st.balance == acked[n], "#{n}: balance #{st.balance}, acknowledged #{acked[n]}"
      assert st.anomalies == []
    end

    # Exactly one copy of each: hosted here once, nowhere else left.
    hosted = for {n, "account"} <- Erlnode.Migration.hosted(), n in names, do: n
    assert Enum.sort(hosted) == Enum.sort(names)
  end

  test "malformed and unknown-version replica messages are logged and dropped" do
    store = Process.whereis(:erlnode_replica)

    log =
      capture_log(fn ->
        send(store, {:"$erlnode_replica", 99, :put, :x})
        send(store, {:"$erlnode_replica", 1, :put, "not an atom", "t", [], 1, %{}, self(), {1, :sync}, self()})
        send(store, {:"$erlnode_replica", 1, :drop, 1, 2})
        assert Replica.held() |> is_list()
      end)

    assert log =~ "dropped"
    assert Process.whereis(:erlnode_replica) == store
    refute_received {:"$erlnode_replica", 1, :ack, _, _}
  end

  test "merge: the resolve method keeps OTP's winner, which takes the loser's state through merge_conflict/2" do
    alias Erlnode.MergeSupport.GCounter
    {:ok, p1} = GenServer.start(GCounter, %{})
    {:ok, p2} = GenServer.start(GCounter, %{})
    {:ok, 2} = GenServer.call(p1, {:incr, "a", 2})
    {:ok, 7} = GenServer.call(p2, {:incr, "b", 7})
    ref = Process.monitor(p1)
    # Same node: OTP's minmax keeps the second pid.
    assert Erlnode.Replica.Merge.resolve(:some_name, p1, p2) == p2
    assert_receive {:DOWN, ^ref, :process, ^p1, _}, 5_000
    assert GenServer.call(p2, :get).counts == %{"a" => 2, "b" => 7}
    GenServer.stop(p2)
  end

  test "merge: only types defining merge_conflict/2 change the registration method" do
    assert Erlnode.Replica.Merge.merges?(Erlnode.MergeSupport.GCounter)
    refute Erlnode.Replica.Merge.merges?(Erlnode.Examples.Account)
    assert Erlnode.Replica.Merge.method(Erlnode.Examples.Account) == (&:global.random_exit_name/3)
    assert Erlnode.Replica.Merge.name(Erlnode.Examples.Account, :x) == {:global, :x}
    assert Erlnode.Replica.Merge.name(Erlnode.MergeSupport.GCounter, :x) == {:via, Erlnode.Replica.Merge, :x}
  end

  test "configuration: module options, per-process options, node override" do
    assert Replica.config("account", replicas: 1) == {1, :sync}
    assert Replica.config("account", replicas: 2, replica_mode: :async) == {2, :async}
    assert Replica.config("account", []) == {0, :sync}
    Application.put_env(:erlnode_ex, :replicas, %{"account" => {3, :async}})
    on_exit(fn -> Application.delete_env(:erlnode_ex, :replicas) end)
    assert Replica.config("account", replicas: 1) == {3, :async}
    assert_raise ArgumentError, fn -> Replica.config("x", replicas: -1) end
  end
end
