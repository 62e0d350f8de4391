defmodule Erlnode.Replica.Store do
  @moduledoc """
  The replica store, `:erlnode_replica`: one per node, started by the
  `:erlnode_ex` application. It keeps the latest state each owner sent
  it (`docs/replicas.md`), never runs a process, and on `nodedown` of an
  owner's node hands the affected entries to `Erlnode.Replica.Failover`.
  Malformed or unknown-version replica messages are logged and dropped.
  """
  use GenServer
  require Logger
  alias Erlnode.Replica

  @sweep 2_000
  @stale_after 4_000
  # an entry Horde places whose owner's node is gone and that nobody
  # fetched is forgotten after this
  @placed_orphan_ttl 600_000

  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: Replica.store_name())

  @impl true
  def init(_opts) do
    :ok = :net_kernel.monitor_nodes(true)
    Process.send_after(self(), :sweep, @sweep)
    {:ok, %{entries: %{}, modules: %{}, watched: %{}, stats: %{puts: 0, deltas: 0, need_whole: 0}}}
  end

  @impl true
  def handle_call({tag, 1, :list}, _from, st) when tag == :"$erlnode_replica" do
    list =
      for {name, e} <- Enum.sort(st.entries),
          do: {name, e.seq, e.owner, byte_size(:erlang.term_to_binary(e.state))}

    {:reply, list, st}
  end

  def handle_call({tag, 1, :stats}, _from, st) when tag == :"$erlnode_replica",
    do: {:reply, st.stats, st}

  # A process Horde restarted after its node died asks for its state
  # (Erlnode.Replica.Placed).
  def handle_call({tag, 1, :fetch, name}, _from, st) when tag == :"$erlnode_replica" and is_atom(name) do
    case st.entries do
      %{^name => e} -> {:reply, {:ok, e.seq, e.owner, e.state}, st}
      _ -> {:reply, :none, st}
    end
  end

  def handle_call(request, _from, st) do
    Logger.warning("replica store: unknown call #{inspect(request, limit: 8)}")
    {:reply, {:error, :unknown_request}, st}
  end

  @impl true
  def handle_info({:"$erlnode_replica", 1, :put, name, type, args, seq, state, owner, {n, mode}, ack_to}, st)
      when is_atom(name) and is_binary(type) and is_integer(seq) and seq >= 0 and is_pid(owner) and
             is_integer(n) and n >= 0 and mode in [:sync, :async] and (is_pid(ack_to) or ack_to == :undefined) do
    fresh =
      case st.entries do
        %{^name => e} -> e.owner != owner or seq > e.seq
        _ -> true
      end

    st = count(st, :puts)

    st =
      if fresh do
        e = %{type: type, args: args, seq: seq, state: state, owner: owner, cfg: {n, mode}, updated: now()}
        st = if Replica.Placed.placed?(name), do: watch(st, owner), else: st
        %{st | entries: Map.put(st.entries, name, e)}
      else
        st
      end

    if is_pid(ack_to), do: send(ack_to, {:"$erlnode_replica", 1, :ack, node(), seq})
    {:noreply, st}
  end

  # docs/replicas.md, "Deltas": applied only on top of exactly `base`
  # from the same owner; otherwise the owner is asked for the whole state.
  def handle_info({:"$erlnode_replica", 1, :delta, name, base, seq, delta, owner, ack_to}, st)
      when is_atom(name) and is_integer(base) and base >= 0 and is_integer(seq) and seq >= 0 and
             is_pid(owner) and (is_pid(ack_to) or ack_to == :undefined) do
    {held, st} =
      case st.entries do
        %{^name => %{owner: ^owner, seq: s}} when s >= seq ->
          {true, st}

        %{^name => %{owner: ^owner, seq: ^base} = e} ->
          {module, st} = module_of(st, e.type)

          case apply_delta(module, e.state, delta) do
            {:ok, state} ->
              e = %{e | state: state, seq: seq, updated: now()}
              {true, count(%{st | entries: Map.put(st.entries, name, e)}, :deltas)}

            {:error, reason} ->
              Logger.warning("replica delta for #{inspect(name)} did not apply (#{inspect(reason, limit: 8)}); asking for the whole state")
              {false, st}
          end

        _ ->
          {false, st}
      end

    cond do
      held and is_pid(ack_to) ->
        send(ack_to, {:"$erlnode_replica", 1, :ack, node(), seq})
        {:noreply, st}

      held ->
        {:noreply, st}

      true ->
        send(owner, {:"$erlnode_replica", 1, :need_whole, node(), name})
        {:noreply, count(st, :need_whole)}
    end
  end

  def handle_info({:"$erlnode_replica", 1, :drop, name, owner}, st) when is_atom(name) and is_pid(owner) do
    case st.entries do
      %{^name => %{owner: ^owner}} -> {:noreply, %{st | entries: Map.delete(st.entries, name)}}
      _ -> {:noreply, st}
    end
  end

  # The owner of an entry Horde places went: the entry goes with it,
  # unless its node went down (then the process Horde restarts elsewhere
  # fetches it).
  def handle_info({:DOWN, _ref, :process, owner, reason}, st) when is_map_key(st.watched, owner) do
    st = %{st | watched: Map.delete(st.watched, owner)}

    if reason == :noconnection do
      {:noreply, st}
    else
      entries = Map.reject(st.entries, fn {n, e} -> e.owner == owner and Replica.Placed.placed?(n) end)
      {:noreply, %{st | entries: entries}}
    end
  end

  def handle_info({:nodedown, dead}, st) do
    # processes Horde places are restarted by Horde and fetch their state
    orphans = for {name, e} <- st.entries, node(e.owner) == dead, not Replica.Placed.placed?(name), do: {name, e}

    if orphans != [] do
      Logger.warning("owner node #{dead} down: failing over #{length(orphans)} replicated processes")
      Replica.Failover.run(dead, orphans)
    end

    {:noreply, st}
  end

  def handle_info({:nodeup, _}, st), do: {:noreply, st}

  def handle_info(:sweep, st) do
    Process.send_after(self(), :sweep, @sweep)
    connected = Node.list()
    t = now()

    {keep, orphans} =
      Enum.reduce(st.entries, {%{}, []}, fn {name, e}, {keep, orphans} ->
        cond do
          t - e.updated < @stale_after ->
            {Map.put(keep, name, e), orphans}

          # not in :global: kept while the owner lives (its DOWN drops it)
          # or its node is gone, until fetched or too old
          Replica.Placed.placed?(name) ->
            if node(e.owner) in connected or node(e.owner) == node() or t - e.updated < @placed_orphan_ttl,
              do: {Map.put(keep, name, e), orphans},
              else: {keep, orphans}

          true ->
            case :global.whereis_name(name) do
              pid when is_pid(pid) and pid != e.owner ->
                {keep, orphans}

              :undefined when node(e.owner) != node() ->
                if node(e.owner) in connected,
                  do: {Map.put(keep, name, e), orphans},
                  else: {Map.put(keep, name, e), [{name, e} | orphans]}

              _ ->
                {Map.put(keep, name, e), orphans}
            end
        end
      end)

    for {dead, list} <- Enum.group_by(orphans, fn {_, e} -> node(e.owner) end),
        do: Replica.Failover.run(dead, list)

    {:noreply, %{st | entries: keep}}
  end

  def handle_info(msg, st) do
    Logger.warning("replica store: malformed, unknown-version or foreign message dropped: #{inspect(msg, limit: 8)}")
    {:noreply, st}
  end

  defp now, do: System.monotonic_time(:millisecond)

  defp watch(st, owner) do
    if Map.has_key?(st.watched, owner) do
      st
    else
      ref = Process.monitor(owner)
      %{st | watched: Map.put(st.watched, owner, ref)}
    end
  end

  defp count(st, what), do: update_in(st.stats[what], &(&1 + 1))

  # The module hosting `type` here, cached (the manager's table); a type
  # not hosted here is remembered as such for a while, so a stream of
  # deltas for it does not call the manager (which may be busy draining)
  # each time.
  defp module_of(st, type) do
    t = now()

    case st.modules do
      %{^type => {:miss, until}} when until > t ->
        {nil, st}

      %{^type => m} when is_atom(m) ->
        {m, st}

      _ ->
        m =
          try do
            Map.get(Erlnode.Migration.types(), type)
          catch
            :exit, _ -> nil
          end

        if m,
          do: {m, put_in(st.modules[type], m)},
          else: {nil, put_in(st.modules[type], {:miss, t + 5_000})}
    end
  end

  defp apply_delta(nil, _held, _delta), do: {:error, :type_not_hosted_here}

  defp apply_delta(module, held, delta) do
    Code.ensure_loaded(module)

    if function_exported?(module, :apply_replica_delta, 2) do
      case module.apply_replica_delta(held, delta) do
        {:ok, new} -> {:ok, new}
        {:error, reason} -> {:error, reason}
        other -> {:error, {:bad_return, other}}
      end
    else
      {:error, :no_apply_replica_delta}
    end
  catch
    kind, reason -> {:error, {:failed, Exception.format_banner(kind, reason)}}
  end
end
