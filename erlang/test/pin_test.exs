defmodule Erlnode.PinTest do
  # Pinning in Elixir: a process started with `pinned: true`, or of a
  # type whose `use` says `pinned: true`, is never moved by placement,
  # whichever node plans the rebalance; other processes still are. The
  # erlnode only serves EPMD. Not async: peers share the one EPMD port.
  use ExUnit.Case, async: false

  alias Erlnode.Migration
  alias Erlnode.MigrationSupport, as: MS
  alias Erlnode.TestSupport, as: TS

  @moduletag :capture_log
  @moduletag timeout: 90_000

  setup_all do
    erl = TS.start_erlnode(args: ["--no-migration"])
    MS.ensure_registered(erl)
    :ok
  end

  defp here(type), do: for({name, ^type} <- Migration.hosted(), do: name)

  test "pinned processes and pinned types stay put under rebalance" do
    base = TS.unique("pin")
    peer = MS.start_peer()
    assert MS.await_member(peer.node, "account")
    assert MS.await_member(peer.node, "pinned_counter")

    accounts = for i <- 1..6, do: :"#{base}_acct_#{i}"
    for a <- accounts, do: {:ok, _} = Migration.start_process("account", %{}, a)
    pinned_account = :"#{base}_acct_pinned"
    {:ok, _} = Migration.start_process("account", %{}, pinned_account, pinned: true)
    counters = for i <- 1..4, do: :"#{base}_counter_#{i}"
    for c <- counters, do: {:ok, _} = Migration.start_process("pinned_counter", 0, c)

    on_exit(fn ->
      for n <- [pinned_account | accounts ++ counters], pid = :global.whereis_name(n), is_pid(pid),
          do: Process.exit(pid, :shutdown)
    end)

    # the pinned type: neither this node's plan nor the peer's moves it
    assert Migration.rebalance("pinned_counter") == {:ok, 0}
    assert :erpc.call(peer.node, Migration, :rebalance, ["pinned_counter"]) == {:ok, 0}
    assert Enum.sort(here("pinned_counter")) == Enum.sort(counters)

    # 6 movable accounts even out (3 move), the pinned one stays here
    assert Migration.rebalance("account") == {:ok, 3}
    assert pinned_account in here("account")
    assert length(here("account")) == 4

    # an explicit move still moves a pinned process
    [c | _] = counters
    assert {:ok, pid} = Migration.migrate(c, peer.node)
    assert node(pid) == peer.node
  end
end
