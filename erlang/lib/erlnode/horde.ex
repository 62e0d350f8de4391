defmodule Erlnode.Horde do
  @moduledoc """
  State handoff for children of a `Horde.DynamicSupervisor`, which Horde
  itself lacks: when Horde moves a child (`process_redistribution:
  :active`, or a member leaving gracefully), its state goes to the process
  that replaces it, on an Elixir node or on a Rust `erlnode` member.

      defmodule MyApp.Account do
        use Erlnode.Migratable, type: "account"
        use Erlnode.Horde, supervisor: MyApp.Sup, registry: MyApp.Registry

        def init(args), do: {:ok, %{balance: args[:balance] || 0}}
        # prepare_handover_state/1 and alter_handover_state/2 as for any
        # erlnode handoff (defaults: the state itself)
      end

      Horde.DynamicSupervisor.start_child(MyApp.Sup,
        %{id: "a1", start: {MyApp.Account, :start_link, [%{name: "a1", balance: 0}]}})

  `use Erlnode.Horde` defines `start_link/1`: the start argument must be a
  map (or keyword list) with the key field (`:name` by default, option
  `:key`), which names the process in `:registry` (`{:via, Horde.Registry,
  {registry, name}}`; no registry: unnamed) and keys its handoff. It needs
  no compile-time dependency on Horde: Horde's modules are only named.

  How the state travels: when the process stops because Horde moves it
  (exit `{:shutdown, :process_redistribution}`, or `:shutdown` while its
  member is `:shutting_down`), its `terminate/2` writes
  `{:erlnode_handoff, name} => {:erlnode_handoff_state, type, version,
  prepare_handover_state(state)}` into the supervisor's own DeltaCrdt
  (`MyApp.Sup.Crdt`) *before* Horde relinquishes the child there, so the
  member that starts the child again has the state in its CRDT when it
  does: the new process's `init/1` runs as usual, then
  `alter_handover_state/2` (after `upgrade_state/2` across versions), and
  the entry is deleted. Horde's own guide (save in `terminate/2` to a
  separate store, reload in `init/1`) loses states because nothing orders
  the store's sync with the supervisor's; here `terminate/2` returns only
  when every other member's replica of the supervisor's CRDT holds the
  state (at most 2 s), so Horde's relinquish, written after the process
  has exited, cannot reach a member before it.

  A killed node runs no `terminate/2`: for that, give the type replicas
  (`use Erlnode.Migratable, replicas: 1`, or the `:replicas` setting of
  `:erlnode_ex`, which must be running): the child then keeps a copy of
  its state on another node, and when Horde restarts it after its node
  died, `init/1` starts from that copy (docs/replicas.md, "Processes
  Horde places"; the key must be a string, an atom or an integer).

  Not carried: messages queued at an Elixir process when Horde kills it
  (a Rust child forwards them to its replacement); the state of a process
  whose node is killed, without replicas. docs/horde.md says what is
  preserved where.
  """

  @doc false
  defmacro __using__(opts) do
    quote location: :keep do
      @erlnode_horde_opts unquote(opts)

      @doc "Starts the process for a Horde supervisor, with state handoff (`Erlnode.Horde`)."
      def start_link(args), do: Erlnode.Horde.start_link(__MODULE__, args, @erlnode_horde_opts)

      defoverridable start_link: 1
      @before_compile Erlnode.Horde
    end
  end

  @doc false
  defmacro __before_compile__(env) do
    # `use GenServer` defines a default terminate/2; calling it with
    # `super` is deprecated, so it is wrapped only when it is the user's.
    {:v1, :def, meta, _} = Module.get_definition(env.module, {:terminate, 2})

    terminate =
      if meta[:context] == GenServer do
        quote do
          def terminate(reason, state), do: Erlnode.Horde.Runtime.hand_off(__MODULE__, reason, state)
        end
      else
        quote do
          def terminate(reason, state) do
            Erlnode.Horde.Runtime.hand_off(__MODULE__, reason, state)
            super(reason, state)
          end
        end
      end

    # `use Erlnode.Migratable` defines handle_info/2, so there always is
    # one to wrap.
    quote location: :keep do
      defoverridable terminate: 2, handle_info: 2
      unquote(terminate)

      # Exits are trapped (so terminate/2 runs when Horde moves the
      # process): a lost name is still the end of this process, as it is
      # for a Horde child that does not trap exits.
      def handle_info({:EXIT, _from, {:name_conflict, _, _, _} = why}, state),
        do: {:stop, {:shutdown, why}, state}

      def handle_info({:"$erlnode_horde", :check_name}, state) do
        Erlnode.Horde.Runtime.check_name(__MODULE__)
        {:noreply, state}
      end

      def handle_info(msg, state), do: super(msg, state)
    end
  end

  @doc """
  Starts `module` (a `use Erlnode.Migratable` module) with `args` as a
  Horde child with handoff; `opts` are those of `use Erlnode.Horde`.
  """
  def start_link(module, args, opts) do
    sup = Keyword.fetch!(opts, :supervisor)
    key = key_of(args, Keyword.get(opts, :key, :name))

    gen_opts =
      case Keyword.get(opts, :registry) do
        nil -> []
        reg -> [name: {:via, Horde.Registry, {reg, key}}]
      end

    GenServer.start_link(module, {:"$erlnode_horde", sup, key, args, Keyword.get(opts, :registry)}, gen_opts)
  end

  defp key_of(args, field) when is_map(args), do: Map.fetch!(args, field)
  defp key_of(args, field) when is_list(args), do: Keyword.fetch!(args, field)
end

defmodule Erlnode.Horde.Drain do
  @moduledoc """
  A graceful leave that keeps the children's states: place it right after
  the `Horde.DynamicSupervisor` in the same supervision tree,

      children = [
        {Horde.Registry, name: MyApp.Registry, keys: :unique, members: :auto},
        {Horde.DynamicSupervisor, name: MyApp.Sup, strategy: :one_for_one,
         members: :auto, process_redistribution: :active},
        {Erlnode.Horde.Drain, supervisor: MyApp.Sup}
      ]

  so that on `System.stop/0`, `Application.stop/1` or SIGTERM it stops
  first. It marks this member `:shutting_down`, moves every local child
  away as Horde's redistribution does (each `use Erlnode.Horde` child
  leaves its state for its replacement), and waits until each child runs
  on another member, its new pid synced back here, at most `:timeout` ms
  (default 30_000). Horde's own shutdown then finds nothing left to lose.

  Without it, Horde relinquishes the children while its CRDT is stopping:
  its last sync offers the changes but the node is gone before any peer
  fetches them, and the children come back on other members only when
  those mark the member dead, fresh.
  """
  use GenServer

  def child_spec(opts) do
    %{
      id: {__MODULE__, Keyword.fetch!(opts, :supervisor)},
      start: {__MODULE__, :start_link, [opts]},
      shutdown: Keyword.get(opts, :timeout, 30_000) + 5_000
    }
  end

  def start_link(opts), do: GenServer.start_link(__MODULE__, opts)

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    {:ok, opts}
  end

  @impl true
  def terminate(_reason, opts) do
    Erlnode.Horde.Runtime.drain(Keyword.fetch!(opts, :supervisor), Keyword.get(opts, :timeout, 30_000))
  end
end

defmodule Erlnode.Horde.Runtime do
  @moduledoc false
  # The two ends of Erlnode.Horde's handoff, talking to the supervisor's
  # DeltaCrdt through DeltaCrdt's API, called by name (no compile-time
  # dependency on it).

  require Logger

  @crdt_timeout 5_000

  @doc false
  # The supervisor's DeltaCrdt process name (`Sup.Crdt`).
  def crdt(sup), do: :"#{sup}.Crdt"
  defp entry(key), do: {:erlnode_handoff, key}

  # A name Horde's registry dropped is taken again: Horde.RegistryImpl
  # fills its table from the CRDT's diffs, after the write, so a member
  # that processes a dead member's removal in between drops the key it
  # has just registered anew for the dead member's restarted child (seen
  # after SIGKILL with Rust members in the cluster: the child ran, alive
  # and unnamed, for good). Checked one second after the start, then
  # every five.
  @check_first 1_000
  @check_every 5_000

  def watch_name(nil, _key), do: :ok

  def watch_name(registry, key) do
    Process.put(:"$erlnode_horde_name", {registry, key})
    Process.send_after(self(), {:"$erlnode_horde", :check_name}, @check_first)
    :ok
  end

  def check_name(module) do
    case Process.get(:"$erlnode_horde_name") do
      {registry, key} ->
        try do
          if apply(Horde.Registry, :lookup, [registry, key]) == [] do
            Logger.warning("#{inspect(module)} #{inspect(self())}: its name #{inspect(key)} is gone from #{inspect(registry)}; registering it again")
            apply(Horde.Registry, :register, [registry, key, nil])
          end
        catch
          kind, why -> Logger.warning("#{inspect(module)}: name check failed: #{Exception.format_banner(kind, why)}")
        end

        Process.send_after(self(), {:"$erlnode_horde", :check_name}, @check_every)

      _ ->
        :ok
    end
  end

  # Target side, in init/1: the handed-over state, taken out of the CRDT.
  def take(module, sup, key) do
    Process.flag(:trap_exit, true)
    Process.put(:"$erlnode_horde", {sup, key})

    case apply(DeltaCrdt, :get, [crdt(sup), entry(key), @crdt_timeout]) do
      nil ->
        nil

      :erlnode_handoff_taken ->
        nil

      value ->
        apply(DeltaCrdt, :delete, [crdt(sup), entry(key), @crdt_timeout])
        check(module, key, value)
    end
  catch
    :exit, reason ->
      Logger.warning("#{inspect(module)}: no handoff state read for #{inspect(key)}: #{inspect(reason)}")
      nil
  end

  defp check(module, key, {:erlnode_handoff_state, type, vsn, hs} = v) when is_integer(vsn) do
    if type == module.__erlnode_migratable__(:type) do
      {vsn, hs}
    else
      Logger.error("#{inspect(module)}: handoff state for #{inspect(key)} is of type #{inspect(type)}; starting fresh: #{inspect(v, limit: 8)}")
      nil
    end
  end

  defp check(module, key, other) do
    Logger.error("#{inspect(module)}: handoff entry for #{inspect(key)} not understood; starting fresh: #{inspect(other, limit: 8)}")
    nil
  end

  # init/1's result with the handed-over state applied.
  def adopt(_module, nil, result), do: result

  def adopt(module, {vsn, hs}, {:ok, state}), do: adopt_state(module, vsn, hs, state, fn s -> {:ok, s} end)

  def adopt(module, {vsn, hs}, {:ok, state, extra}),
    do: adopt_state(module, vsn, hs, state, fn s -> {:ok, s, extra} end)

  def adopt(_module, _handed, other), do: other

  defp adopt_state(module, vsn, hs, state, wrap) do
    case Erlnode.Migratable.Runtime.alter(module, state, vsn, hs) do
      {:ok, new} ->
        wrap.(new)

      {:error, reason} ->
        Logger.error("#{inspect(module)} #{inspect(self())}: handed-over state rejected, starting fresh: #{inspect(reason)}")
        wrap.(state)
    end
  end

  # Source side, in terminate/2: leave the state for the replacement when
  # Horde is moving this process.
  def hand_off(module, reason, state) do
    case Process.get(:"$erlnode_horde") do
      {sup, key} ->
        if moving?(reason, sup) do
          hs = module.prepare_handover_state(state)
          v = {:erlnode_handoff_state, module.__erlnode_migratable__(:type), module.__erlnode_migratable__(:version), hs}
          apply(DeltaCrdt, :put, [crdt(sup), entry(key), v, @crdt_timeout])
          await_replicated(module, sup, entry(key), v)
        end

      _ ->
        :ok
    end
  catch
    kind, why ->
      Logger.error("#{inspect(module)}: handoff state not written: #{Exception.format_banner(kind, why)}")
  end

  # Horde relinquishes the child (writes `{nil, spec}`) only after this
  # process has exited, but the two writes go out in whichever syncs
  # happen to carry them, so a member could read the relinquish first and
  # start the child fresh. terminate/2 therefore returns only once every
  # other member's replica holds the state, or after 2 s: it asks this
  # node's Erlnode.Horde.Replicated waiter, which checks for all the
  # processes leaving at once (a drain moves hundreds).
  defp await_replicated(module, sup, k, v) do
    case Erlnode.Horde.Replicated.await(sup, k, v) do
      :ok ->
        :ok

      {:missing, left} ->
        Logger.warning("#{inspect(module)}: handed-over state for #{inspect(elem(k, 1))} not yet on #{inspect(left)}; the process stops anyway")
        :timeout
    end
  end

  # Erlnode.Horde.Drain: this member stops taking children, its children
  # move, and it waits until each runs elsewhere.
  def drain(sup, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout
    :ok = GenServer.call(sup, :horde_shutting_down, timeout)
    me = {sup, node()}

    local =
      apply(DeltaCrdt, :to_map, [crdt(sup), @crdt_timeout])
      |> Enum.flat_map(fn
        {{:process, id}, {^me, _spec, pid}} when is_pid(pid) -> [{id, pid}]
        _ -> []
      end)

    for {_id, pid} <- local do
      GenServer.call(:"#{sup}.ProcessesSupervisor", {:send_exit_signal, pid, {:shutdown, :process_redistribution}}, timeout)
    end

    Logger.info("#{inspect(sup)}: draining #{length(local)} children to the other members")
    wait_moved(sup, me, Enum.map(local, &elem(&1, 0)), deadline)
  end

  defp wait_moved(sup, me, ids, deadline) do
    m = apply(DeltaCrdt, :to_map, [crdt(sup), @crdt_timeout])

    left =
      Enum.reject(ids, fn id ->
        case Map.get(m, {:process, id}) do
          {member, _spec, pid} when member != me and is_pid(pid) -> true
          _ -> false
        end
      end)

    cond do
      left == [] ->
        :ok

      System.monotonic_time(:millisecond) > deadline ->
        Logger.warning("#{inspect(sup)}: #{length(left)} children not yet running elsewhere; leaving anyway")
        :timeout

      true ->
        # The CRDT syncs every sync_interval: nothing to wait on but it.
        Process.sleep(50)
        wait_moved(sup, me, left, deadline)
    end
  end

  defp moving?({:shutdown, :process_redistribution}, _sup), do: true

  defp moving?(:shutdown, sup) do
    case apply(DeltaCrdt, :get, [crdt(sup), {:member_node_info, {sup, node()}}, @crdt_timeout]) do
      %{status: :shutting_down} -> true
      _ -> false
    end
  end

  defp moving?(_reason, _sup), do: false
end

defmodule Erlnode.Horde.Replicated do
  @moduledoc false
  # One per supervisor and node, started on first use: waits, for every
  # process handing its state over, until each other member's replica of
  # the supervisor's CRDT holds it. Every @poll ms it asks each member
  # once (DeltaCrdt's `{:read, Keys}` call, which erlnode's Rust CRDT
  # answers too) for all the keys still pending, so a drain of hundreds of
  # children costs one call per member per round, not one per child (that
  # flooded the peers' CRDT processes and slowed the very syncs being
  # waited for). DeltaCrdt's API tells no one when a peer has acked a
  # write, hence the polling. A member that cannot be reached, or does
  # not run the supervisor, has no replica to wait for.
  use GenServer
  require Logger

  @wait 2_000
  @poll 20
  @call_timeout 1_000

  def await(sup, key, value) do
    name = :"#{sup}.ErlnodeReplicated"

    pid =
      case GenServer.start(__MODULE__, sup, name: name) do
        {:ok, pid} -> pid
        {:error, {:already_started, pid}} -> pid
      end

    GenServer.call(pid, {:await, key, value}, @wait + 5 * @call_timeout)
  catch
    :exit, reason -> {:missing, {:waiter, reason}}
  end

  @impl true
  def init(sup), do: {:ok, %{sup: sup, pending: [], timer: nil}}

  @impl true
  def handle_call({:await, key, value}, from, st) do
    # The members to wait for are read at the next round (one read of
    # the local CRDT per round, however many processes wait).
    w = {key, value, from, System.monotonic_time(:millisecond) + @wait, nil}
    {:noreply, schedule(%{st | pending: [w | st.pending]})}
  end

  @impl true
  def handle_info(:check, st) do
    st = %{st | timer: nil}
    members = if Enum.any?(st.pending, &(elem(&1, 4) == nil)), do: peers(st.sup), else: []
    pending = Enum.map(st.pending, fn w -> if elem(w, 4) == nil, do: put_elem(w, 4, members), else: w end)
    keys = pending |> Enum.map(&elem(&1, 0)) |> Enum.uniq()
    nodes = pending |> Enum.flat_map(&elem(&1, 4)) |> Enum.uniq()
    held = Map.new(nodes, fn n -> {n, read(st.sup, n, keys)} end)
    now = System.monotonic_time(:millisecond)

    pending =
      Enum.flat_map(pending, fn {key, value, from, deadline, left} = w ->
        left = Enum.reject(left, fn n -> holds?(held[n], key, value) end)

        cond do
          left == [] ->
            GenServer.reply(from, :ok)
            []

          now >= deadline ->
            GenServer.reply(from, {:missing, left})
            []

          true ->
            [put_elem(w, 4, left)]
        end
      end)

    {:noreply, schedule(%{st | pending: pending})}
  end

  def handle_info(_other, st), do: {:noreply, st}

  defp schedule(%{pending: []} = st), do: st
  defp schedule(%{timer: nil} = st), do: %{st | timer: Process.send_after(self(), :check, @poll)}
  defp schedule(st), do: st

  defp holds?(:unreachable, _key, _value), do: true
  defp holds?(map, key, value) when is_map(map), do: match?(%{^key => ^value}, map)

  defp read(sup, node, keys) do
    case GenServer.call({Erlnode.Horde.Runtime.crdt(sup), node}, {:read, keys}, @call_timeout) do
      map when is_map(map) -> map
      _ -> :unreachable
    end
  catch
    :exit, _ -> :unreachable
  end

  defp peers(sup) do
    apply(DeltaCrdt, :to_map, [Erlnode.Horde.Runtime.crdt(sup), @call_timeout])
    |> Enum.flat_map(fn
      {{:member, {_name, n}}, _} when n != node() -> [n]
      _ -> []
    end)
    |> Enum.uniq()
  catch
    :exit, _ -> []
  end
end
