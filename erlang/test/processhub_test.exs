defmodule Erlnode.ProcessHubTest do
  # `use Erlnode.ProcessHub` without ProcessHub itself: its HotSwap
  # messages (docs/processhub-protocol.md, "Migration and handover") and
  # its start from a replica whose owner's node is down. The real hub is
  # in the opt-in interop suite (make test-processhub).
  use ExUnit.Case, async: false

  alias Erlnode.Replica
  alias Erlnode.Replica.Placed

  @moduletag :capture_log

  defmodule Acc do
    use Erlnode.Migratable, type: "ph_test_acc", replicas: 1, replica_mode: :sync
    use Erlnode.ProcessHub, hub: :t_hub

    def init(args), do: {:ok, %{balance: args[:balance] || 0}}
    def handle_call(:get, _from, s), do: {:reply, s, s}
    def handle_call({:add, n}, _from, s), do: {:reply, :ok, %{s | balance: s.balance + n}}
    # what travels is the balance alone, to see both callbacks run
    def prepare_handover_state(s), do: s.balance
    def alter_handover_state(s, balance), do: %{s | balance: balance}
  end

  # A pid of a node that is not connected (its owner's node is "down").
  defp remote_pid(node) do
    name = Atom.to_string(node)
    :erlang.binary_to_term(<<131, 88, 119, byte_size(name), name::binary, 7::32, 0::32, 1::32>>)
  end

  defp put(name, owner, seq, state) do
    send(Replica.store_name(), {Replica.tag(), 1, :put, name, "ph_test_acc", %{}, seq, state, owner, {1, :sync}, self()})
    assert_receive {_, 1, :ack, _, ^seq}, 5_000
  end

  defp fetch(name), do: GenServer.call(Replica.store_name(), {Replica.tag(), 1, :fetch, name})

  defp id, do: "x#{System.unique_integer([:positive])}"

  test "names are those the Rust member builds" do
    assert Placed.processhub_name(:my_hub, "c1") == :"erlnode_processhub:my_hub:bc1"
    assert Placed.processhub_name(:my_hub, :c) == :"erlnode_processhub:my_hub:ac"
    assert Placed.processhub_name(:my_hub, 7) == :"erlnode_processhub:my_hub:i7"
    assert Placed.processhub_name(:my_hub, {1}) == nil
    assert Placed.placed?(:"erlnode_processhub:my_hub:bc1")
  end

  test "the old process sends its prepared state and the retention notice" do
    cid = id()
    {:ok, old} = Acc.start_link(%{id: cid, balance: 41})
    send(old, {:process_hub, :send_handover_state, self(), cid, [retention_receiver: self()]})
    assert_receive {:process_hub, :handover, ^cid, {41, [retention_receiver: _]}}
    assert_receive {:process_hub, :retention_handled, ^cid}
  end

  test "the new process adopts a handover, confirms when asked, and replicates it" do
    cid = id()
    {:ok, new} = Acc.start_link(%{id: cid, balance: 0})
    opts = [confirmation_receiver: self(), confirm_handover: true, hub_id: :t_hub]
    send(new, {:process_hub, :handover, cid, {99, opts}})
    assert_receive {:process_hub, :handover_confirmed, ^cid}
    assert GenServer.call(new, :get) == %{balance: 99}
    # the local store holds no copy (one node: no replica targets), and a
    # malformed handover is dropped, not a crash
    send(new, {:process_hub, :handover, cid, :garbage})
    assert GenServer.call(new, :get) == %{balance: 99}
    assert Process.alive?(new)
  end

  test "a replica whose owner's node is down is adopted at start; one whose owner lives is not" do
    dead = id()
    name = Placed.processhub_name(:t_hub, dead)
    # a replica holds what a handover carries (here the balance)
    put(name, remote_pid(:"gone@nowhere"), 12, 1234)
    {:ok, p} = Acc.start_link(%{id: dead, balance: 0})
    assert GenServer.call(p, :get) == %{balance: 1234}
    # the dead owner's entry is dropped once the new process runs (a
    # message from another sender: bounded polling)
    assert Enum.any?(1..250, fn _ -> fetch(name) == :none or (Process.sleep(20) && false) end)

    live = id()
    lname = Placed.processhub_name(:t_hub, live)
    owner = spawn(fn -> Process.sleep(:infinity) end)
    put(lname, owner, 5, 555)
    {:ok, q} = Acc.start_link(%{id: live, balance: 3})
    assert GenServer.call(q, :get) == %{balance: 3}
    assert Placed.fetch(lname) == {5, 555}
    assert Placed.fetch(lname, :dead_owner) == nil
    Process.exit(owner, :kill)
  end

  test "use Erlnode.ProcessHub needs use Erlnode.Migratable first" do
    code = """
    defmodule Erlnode.ProcessHubTest.Bare do
      use GenServer
      use Erlnode.ProcessHub, hub: :t_hub
    end
    """

    assert_raise CompileError, ~r/needs `use Erlnode.Migratable`/, fn -> Code.compile_string(code) end
  end
end
