defmodule Erlnode.ReplicaPlacedTest do
  # docs/replicas.md, "Processes Horde or ProcessHub places": the Elixir store's rules
  # for entries Horde places (the interop suite checks the same against
  # the Rust store, and both languages' names against each other).
  use ExUnit.Case, async: false

  alias Erlnode.Replica
  alias Erlnode.Replica.Placed

  @moduletag :capture_log

  defp put(name, owner, seq, state) do
    send(Replica.store_name(), {Replica.tag(), 1, :put, name, "account", %{}, seq, state, owner, {1, :sync}, self()})
    assert_receive {_, 1, :ack, _, ^seq}, 5_000
  end

  defp fetch(name), do: GenServer.call(Replica.store_name(), {Replica.tag(), 1, :fetch, name})

  defp await(fun, tries \\ 250) do
    cond do
      fun.() -> true
      tries == 0 -> false
      true -> Process.sleep(20) && await(fun, tries - 1)
    end
  end

  test "names by key kind; other keys get none" do
    assert Placed.horde_name(MyApp.Sup, "a1") == :"erlnode_horde:Elixir.MyApp.Sup:ba1"
    assert Placed.horde_name(MyApp.Sup, :k) == :"erlnode_horde:Elixir.MyApp.Sup:ak"
    assert Placed.horde_name(MyApp.Sup, -5) == :"erlnode_horde:Elixir.MyApp.Sup:i-5"
    assert Placed.horde_name(MyApp.Sup, {1}) == nil
    assert Placed.horde_name(MyApp.Sup, <<255>>) == nil
    assert Placed.horde_name(MyApp.Sup, String.duplicate("x", 300)) == nil
    assert Placed.placed?(:"erlnode_horde:Elixir.MyApp.Sup:ba1")
    refute Placed.placed?(:acc1)
  end

  test "an owner that exits loses its entry; one whose node went keeps it for the fetch" do
    gone = Placed.horde_name(MyApp.Sup, "gone#{System.unique_integer([:positive])}")
    kept = Placed.horde_name(MyApp.Sup, "kept#{System.unique_integer([:positive])}")
    a = spawn(fn -> Process.sleep(:infinity) end)
    b = spawn(fn -> Process.sleep(:infinity) end)
    put(gone, a, 3, %{balance: 3})
    put(kept, b, 4, %{balance: 4})
    assert fetch(gone) == {:ok, 3, a, %{balance: 3}}
    assert fetch(:"erlnode_horde:Elixir.MyApp.Sup:bnothing") == :none

    # a crash (any exit on a live node): the entry goes
    ref = Process.monitor(a)
    Process.exit(a, :kill)
    assert_receive {:DOWN, ^ref, _, _, _}
    # the store's DOWN and this test's call come from different senders,
    # so their order is not guaranteed: bounded polling
    assert await(fn -> fetch(gone) == :none end), "the entry of an owner that exited stayed"

    # the owner's node went down (the DOWN the runtime gives then): kept
    send(Replica.store_name(), {:DOWN, make_ref(), :process, b, :noconnection})
    assert fetch(kept) == {:ok, 4, b, %{balance: 4}}
    # and no failover ran for it: nothing registered it
    assert :global.whereis_name(kept) == :undefined

    # the restarted process drops the dead owner's entry
    send(Replica.store_name(), {Replica.tag(), 1, :drop, kept, b})
    assert fetch(kept) == :none
    Process.exit(b, :kill)
  end
end
