defmodule Erlnode.SupervisionTest do
  # Migratable processes run under Erlnode.ProcessSupervisor, which
  # honours their `restart:` and restarts them from their start arguments.
  use ExUnit.Case, async: true

  alias Erlnode.Migration

  @moduletag :capture_log

  defmodule Crashy do
    @moduledoc false
    use Erlnode.Migratable, type: "supervision_crashy", host: false

    @impl true
    def init(n), do: {:ok, n}

    @impl true
    def handle_call(:get, _from, n), do: {:reply, n, n}
    def handle_call(:inc, _from, n), do: {:reply, n + 1, n + 1}

    @impl true
    def handle_cast(:crash, _n), do: raise("boom")
  end

  defmodule Temporary do
    @moduledoc false
    use Erlnode.Migratable, type: "supervision_temporary", host: false, restart: :temporary

    @impl true
    def init(n), do: {:ok, n}

    @impl true
    def handle_cast(:crash, _n), do: raise("boom")
  end

  defp name(prefix), do: :"#{prefix}_#{System.unique_integer([:positive])}"

  # The restarted process registers the name again; wait for that event.
  defp await_new_pid(name, old) do
    ref = make_ref()
    me = self()

    spawn_link(fn ->
      Stream.repeatedly(fn -> :global.whereis_name(name) end)
      |> Enum.find(fn p -> is_pid(p) and p != old end)
      |> then(&send(me, {ref, &1}))
    end)

    assert_receive {^ref, pid}, 5_000
    pid
  end

  test "a crashed :transient process is restarted, from its start arguments" do
    name = name("crashy")
    {:ok, pid} = Migration.start_process(Crashy, 10, name)
    assert {:undefined, ^pid, :worker, [Crashy]} = List.keyfind(DynamicSupervisor.which_children(Erlnode.ProcessSupervisor), pid, 1)
    assert GenServer.call({:global, name}, :inc) == 11
    mon = Process.monitor(pid)
    GenServer.cast({:global, name}, :crash)
    assert_receive {:DOWN, ^mon, :process, ^pid, {%RuntimeError{message: "boom"}, _}}, 5_000
    new = await_new_pid(name, pid)
    assert GenServer.call({:global, name}, :get) == 10, "restarted from its start arguments"

    # a normal stop is final for a :transient child
    mon = Process.monitor(new)
    :ok = GenServer.stop(new, :normal)
    assert_receive {:DOWN, ^mon, :process, ^new, :normal}
    refute Enum.any?(DynamicSupervisor.which_children(Erlnode.ProcessSupervisor), &match?({_, ^new, _, _}, &1))
  end

  test "restart: :temporary is honoured: no restart" do
    name = name("temporary")
    {:ok, pid} = Migration.start_process(Temporary, 1, name)
    assert {_, ^pid, :worker, [Temporary]} = List.keyfind(DynamicSupervisor.which_children(Erlnode.ProcessSupervisor), pid, 1)
    mon = Process.monitor(pid)
    GenServer.cast({:global, name}, :crash)
    assert_receive {:DOWN, ^mon, :process, ^pid, _}, 5_000
    # the supervisor gets the EXIT as this process gets the DOWN: a
    # restart would already be listed
    refute Enum.any?(DynamicSupervisor.which_children(Erlnode.ProcessSupervisor), &match?({_, _, _, [Temporary]}, &1))
  end
end
