defmodule Erlnode.Migration do
  @moduledoc """
  The migration manager (`M` in `docs/handoff.md`) and the public API to
  start and move migratable processes.

  One manager runs on every node that hosts migratable processes,
  registered locally as `:erlnode_migration`, the name Rust `erlnode`
  nodes use too, so both kinds of node find each other's manager by
  `{:erlnode_migration, node}`. The `:erlnode_ex` application starts it
  (set `config :erlnode_ex, migration_manager: false` to opt out and start
  it yourself with `start_link/1` or `child_spec/1`, e.g. in a script that
  does not start the application).

  It keeps the *type registry*: the string a process type is known by on
  every node (`"account"`) -> the module implementing it here. Defaults:
  `"account"` -> `Erlnode.Examples.Account`, plus
  `config :erlnode_ex, migration_types: %{"type" => Module}`, the `:types`
  option and `register_type/2`. A type not registered but spelled like an
  Elixir module (`"Elixir.MyApp.Counter"`, the default type of a module
  without `type:`) resolves to that module if it is a migratable one.

  It answers these requests, ordinary `GenServer` calls so that Rust
  nodes can send them:

    * `{:"$erlnode_migrate", :start, type, args, name, ref, src}` from a
      source: starts a target with
      `GenServer.start(module, {:"$erlnode_handover", ref, src, args, name})`
      and replies `{:ok, pid}` or `{:error, reason}`
      (`{:unknown_type, type}` when the type is not known here); a source
      with its own replica setting adds an eighth element,
      `%{replicas: {n, :sync | :async}}`, which the target keeps; a
      source with a small handover puts it in the same map,
      `%{handover: {state, queue}}`: the manager sends it to the new
      target as the source would have (`{:"$erlnode_migrate", :handover,
      ref, state, queue, src}`) and replies `{:ok, pid, :handed_over}`,
      one round trip less for the source;
    * `{:"$erlnode_migrate", :migrate, name, target_node, mode}` from a
      requester: sends the process holding `name`
      `{:"$erlnode_migrate", :begin, ref, target_node, mode, self()}` and
      replies with the `result` the source reports; if the process lives on
      another node, asks that node's manager on the caller's behalf;
      `{:error, :no_such_name}` if nobody holds the name;
    * `{:"$erlnode_migrate", :hosted}`: replies `[{name, type}]`, the
      migratable processes registered globally and running here.
    * `{:"$erlnode_migrate", :spawn, type, args, name}` (from `erlnode
      bench`): starts a fresh process of `type` here, registered as
      `{:global, name}`; replies `{:ok, pid}` or `{:error, reason}`
      (`{:unknown_type, type}` when the type is not known here).

  None blocks the manager: targets are started from a short-lived process
  (a slow `init/1` delays only its own source), relays run in their own
  process, and a migration request is answered when its result message
  arrives, so any number of migrations run at once.

  Membership (for placement, as the Rust managers do): on every `nodeup`
  the manager sends the peer's manager
  `{:"$erlnode_migrate", :members, node(), types, true}` (its type names);
  one receiving such a message records which node hosts which types
  (`members/1`) and, when the last element is `true`, answers with its own
  list (`false`). `nodedown` forgets the node, and so does an announcement
  with no types, which a manager sends every peer when it stops (below).

  ## Placement (as the Rust managers do, with the same ring)

  Owners come from `Erlnode.Migration.Ring` (ProcessHub's consistent
  hashing) over the nodes known to host a type, keyed by the process's
  global name, so Rust and Elixir nodes agree on every owner.

    * **Join**: when an announcement says a node newly hosts a type, every
      local process of that type whose owner on the ring of that type's
      members (this node included) is the newcomer moves there, from a
      separate process (the manager never waits), 16 moves at a time,
      failed moves retried twice, progress logged
      (`join: progress done=… total=… failed=…`). Option
      `:rebalance_on_join` (default: `config :erlnode_ex,
      rebalance_on_join: true`, read at each join when the option is not
      given).
    * **Graceful leave**: `drain/1` moves every local process to its owner
      on the ring without this node. The manager traps exits and drains in
      `terminate/2` when it is shut down (`Application.stop(:erlnode_ex)`,
      `System.stop/0`, SIGTERM to a release), after telling its peers it no
      longer hosts anything, bounded by `:drain_timeout` (ms, default
      60_000; `child_spec/1` sets the supervisor's `shutdown` to that plus
      5 s). `drain_on_stop: false` turns it off. Processes whose type no
      other node hosts stay, and stop with the node.
    * **Imbalance**: `rebalance/1` (or the call
      `{:"$erlnode_migrate", :rebalance, type}`, replied `{:ok, moved}` or
      `{:error, reason}`, as on Rust nodes) moves processes of a type from
      the most to the least loaded member until counts differ by at most
      one.
  """

  use GenServer
  require Logger

  alias Erlnode.Migratable.Runtime
  alias Erlnode.Migration.Ring

  @name :erlnode_migration
  @tag :"$erlnode_migrate"

  @default_types %{"account" => Erlnode.Examples.Account}
  @migrate_timeout 30_000
  # After a lost reply, how long to wait for the name to leave the source:
  # the source's accept timeout plus the target's switch timeout.
  @reply_lost_wait 40_000

  # placement (same numbers as the Rust manager)
  @placement_concurrency 16
  @placement_retries 2
  @placement_move_timeout 60_000
  @drain_timeout 60_000
  @drain_shutdown_margin 5_000
  @rebalance_timeout 300_000

  @typedoc "A type name (string, as on the wire) or a migratable module."
  @type type_or_module :: String.t() | module()

  @typedoc "`:hot` (start the target, then pause and hand over) or `:cold` (pause first)."
  @type mode :: :hot | :cold

  @typedoc "Options of `migrate/3`."
  @type migrate_option :: {:mode, mode()} | {:timeout, timeout()}

  @typedoc """
  Per-instance options of `start_process/4`: `:retention`, `:settle`,
  `:accept_timeout`, `:handover_timeout`, `:start_timeout` (see
  `Erlnode.Migratable`) and `:hook`, a `(phase, info -> any)` function or
  `{m, f, a}` (called as `apply(m, f, [phase, info | a])`) run by the
  source at `:started`, `:handover_sent`, `:accepted`, `:registered` and
  `:switched`, for fault-injection tests.
  """
  @type start_option ::
          {:retention, non_neg_integer()}
          | {:settle, non_neg_integer()}
          | {:accept_timeout, timeout()}
          | {:handover_timeout, timeout()}
          | {:start_timeout, timeout()}
          | {:pinned, boolean()}
          | {:hook, (atom(), map() -> any()) | {module(), atom(), list()}}

  ## ------------------------------------------------------------------
  ## API

  @doc """
  Starts the manager, registered as `:erlnode_migration`.

  Options: `:types`, a map of extra type registrations; `:migrate_timeout`,
  ms a `migrate` request waits for its source's result (#{@migrate_timeout});
  `:rebalance_on_join` (boolean; default: the application environment's
  `:rebalance_on_join`, read at each join, else `true`); `:drain_timeout`
  (ms, default: the application environment's `:drain_timeout`, else
  #{@drain_timeout}); `:drain_on_stop` (default: the application
  environment's `:drain_on_stop`, else `true`).
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: @name)

  @doc """
  Child spec whose `shutdown` leaves the manager time to drain: the drain
  timeout plus #{@drain_shutdown_margin} ms.
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    %{
      id: __MODULE__,
      start: {__MODULE__, :start_link, [opts]},
      shutdown: drain_timeout(opts) + @drain_shutdown_margin
    }
  end

  @doc "The name the manager is registered under on every node."
  @spec name() :: atom()
  def name, do: @name

  @doc "Registers (or replaces) `type` -> `module` on the local manager."
  @spec register_type(String.t(), module()) :: :ok | {:error, term()}
  def register_type(type, module) when is_binary(type) and is_atom(module) do
    if migratable?(module),
      do: GenServer.call(@name, {:register_type, type, module}),
      else: {:error, {:not_migratable, module}}
  end

  @doc "The local type registry."
  @spec types() :: %{String.t() => module()}
  def types, do: GenServer.call(@name, :types)

  @doc "Nodes known (through `members` messages, and this one) to host `type`."
  @spec members(String.t()) :: [node()]
  def members(type) when is_binary(type), do: GenServer.call(@name, {:members, type})

  @doc "`[{name, type}]` of the migratable processes running on `node` (pinned ones included)."
  @spec hosted(node()) :: [{atom(), String.t()}]
  def hosted(node \\ node()), do: GenServer.call({@name, node}, {@tag, :status}).hosted

  @doc """
  Starts a migratable process on this node and registers it as
  `{:global, name}`. Returns like `GenServer.start/3` (the process is not
  linked to the caller: it may later leave this node). It runs under
  `Erlnode.ProcessSupervisor`, which restarts it per the module's
  `restart:` (from its start arguments: see that module).
  """
  @spec start_process(type_or_module(), term(), atom(), [start_option()]) ::
          GenServer.on_start()
  def start_process(type_or_module, args, name, opts \\ []) when is_atom(name) do
    with {:ok, module} <- resolve_local(type_or_module) do
      Erlnode.ProcessSupervisor.start_fresh(module, args, name, opts)
    end
  end

  @doc """
  Moves the process registered as `{:global, name}` to `target_node`.

  Asks the manager of the node currently hosting the process (which relays
  if the process moved meanwhile). Returns `{:ok, pid}` of the process on
  `target_node` once it owns the name, or `{:error, reason}`, in which
  case the process kept running where it was, with its state and its
  queued messages, unless `reason` says it died. Reasons are those of
  `docs/handoff.md` ("Error reasons"), plus `{:manager, node, exit_reason}`
  when the hosting node's manager could not be reached and the process is
  still at its source. When that call fails but the process moves all the
  same, the result is `{:ok, pid}` (on the target) or
  `{:error, {:moved_elsewhere, pid}}`.

  Options: `mode: :hot | :cold` (default `:hot`), `timeout` (ms, default
  #{@migrate_timeout + 5_000}).
  """
  @spec migrate(atom(), node(), [migrate_option()]) :: {:ok, pid()} | {:error, term()}
  def migrate(name, target_node, opts \\ []) when is_atom(name) and is_atom(target_node) do
    mode = Keyword.get(opts, :mode, :hot)
    timeout = Keyword.get(opts, :timeout, @migrate_timeout + 5_000)

    case :global.whereis_name(name) do
      :undefined ->
        {:error, :no_such_name}

      pid ->
        case call_migrate(node(pid), {@tag, :migrate, name, target_node, mode}, timeout) do
          {:error, {:manager, _, _}} = lost -> settled(name, pid, target_node, lost, @reply_lost_wait)
          result -> result
        end
    end
  end

  # The host's reply was lost (timeout, nodedown) but the handoff goes on
  # without us: the answer is where the name points once it leaves the
  # source (docs/handoff.md, "Failures"). Still at the source when the
  # longest handoff is over: the manager error stands.
  defp settled(name, source, target, lost, wait) do
    case :global.whereis_name(name) do
      pid when is_pid(pid) and node(pid) == target ->
        {:ok, pid}

      pid when is_pid(pid) and pid != source ->
        {:error, {:moved_elsewhere, pid}}

      _ when wait <= 0 ->
        lost

      _ ->
        Process.sleep(50)
        settled(name, source, target, lost, wait - 50)
    end
  end

  @doc """
  Graceful leave: moves every migratable process hosted here to its owner
  on the ring of the other nodes hosting its type (16 at a time, failed
  moves retried twice, progress logged), and returns what happened:
  `moved`, how many moved; `failed`, `[{name, reason}]` of those that did
  not (after retries); `unplaced`, the names of the processes whose type
  no other node hosts (they stay here).

  The manager does this by itself when it is shut down (see the module
  doc); call it directly to empty a node that keeps running. Option
  `timeout` (ms, default the manager's drain timeout): processes not moved
  by then are reported failed with reason `:drain_timeout` (a move under
  way still completes or rolls back on its own).
  """
  @spec drain(keyword()) :: %{
          moved: non_neg_integer(),
          failed: [{atom(), term()}],
          unplaced: [atom()]
        }
  def drain(opts \\ []) do
    {members, default_timeout} = GenServer.call(@name, :placement_members)
    do_drain(members, Keyword.get(opts, :timeout, default_timeout))
  end

  @doc """
  Moves processes of `type` from the most to the least loaded node hosting
  it until their counts differ by at most one. Returns `{:ok, moved}`, or
  `{:error, {:failed, count}}` when some moves failed after retries, or
  `{:error, {:hosted, node, reason}}` when a member's hosted list could not
  be read. Runs on this node's manager (the call
  `{:"$erlnode_migrate", :rebalance, type}` that Rust nodes answer too).
  """
  @spec rebalance(type_or_module(), timeout()) :: {:ok, non_neg_integer()} | {:error, term()}
  def rebalance(type, timeout \\ @rebalance_timeout)

  def rebalance(type, timeout) when is_binary(type),
    do: GenServer.call(@name, {@tag, :rebalance, type}, timeout)

  def rebalance(module, timeout) when is_atom(module) do
    if migratable?(module),
      do: rebalance(module.__erlnode_migratable__(:type), timeout),
      else: {:error, {:not_migratable, module}}
  end

  defp call_migrate(node, request, timeout) do
    GenServer.call({@name, node}, request, timeout)
  catch
    :exit, {reason, {GenServer, :call, _}} -> {:error, {:manager, node, reason}}
  end

  ## ------------------------------------------------------------------
  ## GenServer

  @impl true
  def init(opts) do
    types =
      @default_types
      |> Map.merge(discovered_types())
      |> Map.merge(Application.get_env(:erlnode_ex, :migration_types, %{}))
      |> Map.merge(Map.new(Keyword.get(opts, :types, %{})))

    # terminate/2 must run on shutdown: it drains (graceful leave)
    Process.flag(:trap_exit, true)
    :ok = :net_kernel.monitor_nodes(true)
    for peer <- Node.list(), do: announce(peer, types, true)

    {:ok,
     %{
       types: types,
       members: %{},
       pending: %{},
       migrate_timeout: Keyword.get(opts, :migrate_timeout, @migrate_timeout),
       # :env: read the application environment at each join
       rebalance_on_join: Keyword.get(opts, :rebalance_on_join, :env),
       drain_timeout: drain_timeout(opts),
       drain_on_stop:
         Keyword.get_lazy(opts, :drain_on_stop, fn ->
           Application.get_env(:erlnode_ex, :drain_on_stop, true)
         end)
     }}
  end

  defp drain_timeout(opts) do
    Keyword.get_lazy(opts, :drain_timeout, fn ->
      Application.get_env(:erlnode_ex, :drain_timeout, @drain_timeout)
    end)
  end

  defp rebalance_on_join?(%{rebalance_on_join: :env}),
    do: Application.get_env(:erlnode_ex, :rebalance_on_join, true) == true

  defp rebalance_on_join?(%{rebalance_on_join: flag}), do: flag == true

  @impl true
  def terminate(reason, st) do
    # Leaving: peers stop counting this node as a member (an Elixir
    # manager replaces a node's types with what it announces; a Rust
    # manager ignores an empty list), then everything hosted here leaves.
    if shutdown_reason?(reason) do
      for peer <- Node.list(), do: send({@name, peer}, {@tag, :members, node(), [], false})
    end

    if st.drain_on_stop and shutdown_reason?(reason) do
      hosted = length(hosted_here())

      if hosted > 0 do
        Logger.info("leaving: moving hosted processes to the remaining nodes hosted=#{hosted}")
        report = do_drain(members_by_type(st), st.drain_timeout)

        if report.failed == [] do
          Logger.info("drain complete moved=#{report.moved}")
        else
          Logger.warning(
            "drain incomplete moved=#{report.moved} failed=#{length(report.failed)} " <>
              "first=#{inspect(hd(report.failed))}"
          )
        end
      end
    end

    :ok
  end

  defp shutdown_reason?(reason),
    do: reason in [:normal, :shutdown] or match?({:shutdown, _}, reason)

  @impl true
  def handle_call({@tag, :start, type, args, name, ref, src}, from, st)
      when is_reference(ref) and is_pid(src) and is_atom(name) do
    init_arg = {:"$erlnode_handover", ref, src, args, name}
    start_async(type, st, from, &Erlnode.ProcessSupervisor.start_target(&1, init_arg))
  end

  # The same from a process with its own replica setting, which the
  # target keeps (unknown keys of the map are ignored).
  def handle_call({@tag, :start, type, args, name, ref, src, extra} = request, from, st)
      when is_reference(ref) and is_pid(src) and is_atom(name) and is_map(extra) do
    opts =
      case Map.get(extra, :replicas) do
        nil -> {:ok, []}
        {n, mode} when is_integer(n) and n >= 0 and n <= 16 and mode in [:sync, :async] -> {:ok, [replicas: n, replica_mode: mode]}
        _ -> {:error, :replicas}
      end

    handover =
      case Map.get(extra, :handover) do
        nil -> {:ok, nil}
        {hs, q} when is_list(q) -> {:ok, {@tag, :handover, ref, hs, q, src}}
        _ -> {:error, :handover}
      end

    case {opts, handover} do
      {{:ok, opts}, {:ok, handover}} ->
        init_arg =
          if opts == [],
            do: {:"$erlnode_handover", ref, src, args, name},
            else: {:"$erlnode_handover", ref, src, args, name, opts}

        start_async(type, st, from, &Erlnode.ProcessSupervisor.start_target(&1, init_arg), handover)

      {{:error, what}, _} ->
        bad_start(request, what, st)

      {_, {:error, what}} ->
        bad_start(request, what, st)
    end
  end

  # `erlnode bench`: a fresh process of `type` here, registered globally.
  def handle_call({@tag, :spawn, type, args, name}, from, st) when is_atom(name) do
    start_async(type, st, from, &Erlnode.ProcessSupervisor.start_fresh(&1, args, name, []))
  end

  def handle_call({@tag, :migrate, name, target_node, mode} = request, from, st) do
    with {:mode, m} when m != :error <- {:mode, Runtime.normalize_mode(mode)},
         {:target, true} <- {:target, is_atom(target_node)},
         {:pid, pid} when is_pid(pid) <- {:pid, :global.whereis_name(name)},
         {:here, true, _} <- {:here, node(pid) == node(), pid} do
      ref = make_ref()
      mon = Process.monitor(pid)
      send(pid, {@tag, :begin, ref, target_node, m, self()})
      timer = Process.send_after(self(), {:migrate_timeout, ref}, st.migrate_timeout)
      pending = Map.put(st.pending, ref, %{from: from, mon: mon, timer: timer})
      {:noreply, %{st | pending: pending}}
    else
      {:mode, _} ->
        {:reply, {:error, {:bad_mode, mode}}, st}

      {:target, _} ->
        {:reply, {:error, {:bad_target, target_node}}, st}

      {:pid, :undefined} ->
        {:reply, {:error, :no_such_name}, st}

      {:here, false, pid} ->
        # Hosted elsewhere: ask that node's manager on the caller's behalf.
        timeout = st.migrate_timeout + 5_000
        spawn(fn -> GenServer.reply(from, call_migrate(node(pid), request, timeout)) end)
        {:noreply, st}
    end
  end

  def handle_call({@tag, :hosted}, _from, st), do: {:reply, movable_here(), st}

  # `erlnode status`: what runs here and the migrations this manager waits for.
  def handle_call({@tag, :status}, _from, st),
    do: {:reply, %{hosted: hosted_here(), in_flight: map_size(st.pending), nodes: Node.list()}, st}

  def handle_call({@tag, :rebalance, type}, from, st) when is_binary(type) do
    nodes = members_of(st, type)

    spawn(fn ->
      reply =
        case rebalance_nodes(type, nodes) do
          {:ok, %{failed: []} = r} -> {:ok, r.moved}
          {:ok, r} -> {:error, {:failed, length(r.failed)}}
          {:error, reason} -> {:error, reason}
        end

      GenServer.reply(from, reply)
    end)

    {:noreply, st}
  end

  def handle_call(:placement_members, _from, st),
    do: {:reply, {members_by_type(st), st.drain_timeout}, st}

  def handle_call({:register_type, type, module}, _from, st) do
    new? = not Map.has_key?(st.types, type)
    st = %{st | types: Map.put(st.types, type, module)}
    if new?, do: for(peer <- Node.list(), do: announce(peer, st.types, false))
    {:reply, :ok, st}
  end

  def handle_call(:types, _from, st), do: {:reply, st.types, st}

  def handle_call({:members, type}, _from, st), do: {:reply, members_of(st, type), st}

  def handle_call({:resolve, type}, _from, st), do: {:reply, resolve_type(type, st.types), st}

  def handle_call(request, _from, st) do
    Logger.warning("#{@name}: unknown or malformed request #{inspect(request, limit: 8)}")
    {:reply, {:error, :unknown_request}, st}
  end

  defp bad_start(request, what, st) do
    Logger.warning("migration manager: start request with a malformed #{what} refused: #{inspect(request, limit: 8)}")
    {:reply, {:error, {:bad_request, what}}, st}
  end

  # Starts a process of `type` from a short-lived process (a slow
  # `init/1` delays only its own caller), which replies `{:ok, pid}` or
  # `{:error, reason}`.
  defp start_async(type, st, from, start, handover \\ nil) do
    case resolve_type(type, st.types) do
      {:ok, module} ->
        spawn(fn ->
          reply =
            case start.(module) do
              {:ok, pid} when handover == nil ->
                {:ok, pid}

              # the handover that came with the request, as the source
              # would have sent it
              {:ok, pid} ->
                send(pid, handover)
                {:ok, pid, :handed_over}

              :ignore ->
                {:error, :ignore}

              {:error, reason} ->
                {:error, reason}
            end

          GenServer.reply(from, reply)
        end)

        {:noreply, st}

      :error ->
        {:reply, {:error, {:unknown_type, type}}, st}
    end
  end

  @impl true
  def handle_info({@tag, :result, ref, result}, st) do
    {:noreply, finish(st, ref, result)}
  end

  # A VM made distributed after the manager started gets a nodeup for
  # itself: not a peer.
  def handle_info({@tag, :members, peer, _types, _ack}, st) when peer == node(),
    do: {:noreply, st}

  def handle_info({:nodeup, peer}, st) when peer == node(), do: {:noreply, st}

  # An Elixir peer's announcement carries its ring encoding: a different
  # one means the two nodes disagree on owners (mixed OTP releases).
  def handle_info({@tag, :members, peer, types, ack, encoding}, st) when is_atom(encoding) do
    if peer != node() and encoding != Ring.encoding() do
      Logger.warning(
        "#{@name}: #{peer} hashes the placement ring as #{encoding}, this node as " <>
          "#{Ring.encoding()}: owners disagree. Set `config :erlnode_ex, ring_encoding:` " <>
          "to one value on every node (docs/otp-releases.md)"
      )
    end

    handle_info({@tag, :members, peer, types, ack}, st)
  end

  def handle_info({@tag, :members, peer, types, ack}, st)
      when is_atom(peer) and is_list(types) and is_boolean(ack) do
    types = types |> Enum.filter(&is_binary/1) |> Enum.uniq()
    if ack, do: announce(peer, st.types, false)
    new_types = types -- Map.get(st.members, peer, [])

    members =
      if types == [], do: Map.delete(st.members, peer), else: Map.put(st.members, peer, types)

    st = %{st | members: members}

    if peer != node() and new_types != [] and rebalance_on_join?(st) do
      for type <- new_types, do: join_placement(peer, type, members_of(st, type))
    end

    {:noreply, st}
  end

  def handle_info({:nodeup, peer}, st) do
    announce(peer, st.types, true)
    {:noreply, st}
  end

  def handle_info({:nodedown, peer}, st) do
    {:noreply, %{st | members: Map.delete(st.members, peer)}}
  end

  def handle_info({:EXIT, _pid, _reason}, st) do
    # trapping exits (for terminate/2); the parent's EXIT never gets here
    {:noreply, st}
  end

  def handle_info({:migrate_timeout, ref}, st) do
    {:noreply, finish(st, ref, {:error, :timeout})}
  end

  def handle_info({:DOWN, mon, :process, _pid, reason}, st) do
    case Enum.find(st.pending, fn {_ref, p} -> p.mon == mon end) do
      {ref, _} -> {:noreply, finish(st, ref, {:error, {:source_down, reason}})}
      nil -> {:noreply, st}
    end
  end

  def handle_info(msg, st) do
    Logger.warning("#{@name}: dropped unexpected message #{inspect(msg, limit: 8)}")
    {:noreply, st}
  end

  defp finish(st, ref, result) do
    case Map.pop(st.pending, ref) do
      {nil, _} ->
        st

      {p, pending} ->
        Process.demonitor(p.mon, [:flush])
        Process.cancel_timer(p.timer)
        GenServer.reply(p.from, result)
        %{st | pending: pending}
    end
  end

  # To the peer's manager if it has one (otherwise the send is dropped).
  # The sixth element is the ring encoding this node hashes with: Rust
  # nodes follow it (docs/otp-releases.md).
  defp announce(peer, types, ack) do
    send({@name, peer}, {@tag, :members, node(), Map.keys(types), ack, Ring.encoding()})
  end

  # Nodes known to host `type`, this one included if it does, sorted.
  defp members_of(st, type) do
    remote = for {node, types} <- st.members, type in types, do: node
    local = if Map.has_key?(st.types, type), do: [node()], else: []
    Enum.sort(Enum.uniq(local ++ remote))
  end

  # type -> members_of(type), for every type known here or announced.
  defp members_by_type(st) do
    types = Map.keys(st.types) ++ Enum.flat_map(st.members, fn {_node, ts} -> ts end)
    for type <- Enum.uniq(types), into: %{}, do: {type, members_of(st, type)}
  end

  defp hosted_here, do: for({name, type, _meta} <- hosted_meta(), do: {name, type})

  # What placement (join, rebalance, other nodes' plans) may move: pinned
  # processes (`pinned: true` per process or in the module's `use`) are
  # left out. A graceful leave (drain) still hands them on.
  defp movable_here,
    do: for({name, type, meta} <- hosted_meta(), meta.opts[:pinned] != true, do: {name, type})

  defp hosted_meta do
    for name <- :global.registered_names(),
        pid = :global.whereis_name(name),
        is_pid(pid) and node(pid) == node(),
        {:dictionary, dict} <- [Process.info(pid, :dictionary)],
        %{type: type} = meta <- [dict[Runtime.meta_key()]],
        do: {name, type, meta}
  end

  ## ------------------------------------------------------------------
  ## placement (join, drain, rebalance): runs outside the manager

  # A newcomer hosts `type`: every local process of that type whose owner
  # on the ring of `nodes` (the members, newcomer included) is the
  # newcomer moves there.
  defp join_placement(newcomer, type, nodes) do
    spawn(fn ->
      ring = Ring.new(nodes)

      plan =
        for {name, ^type} <- movable_here(),
            Ring.owner(ring, name) == newcomer,
            do: {name, newcomer}

      if plan != [] do
        report = run_plan(plan, "join")

        if report.failed != [] do
          Logger.warning(
            "join: some processes did not move failed=#{length(report.failed)} " <>
              "first=#{inspect(hd(report.failed))}"
          )
        end
      end
    end)
  end

  # Graceful leave: every hosted process to its owner on the ring of its
  # type's members without this node; bounded by `timeout`.
  defp do_drain(members_by_type, timeout) do
    me = node()

    rings =
      Map.new(members_by_type, fn {type, nodes} ->
        {type, if(nodes -- [me] == [], do: nil, else: Ring.new(nodes -- [me]))}
      end)

    {plan, unplaced} =
      Enum.reduce(hosted_here(), {[], []}, fn {name, type}, {plan, unplaced} ->
        case Map.get(rings, type) do
          nil -> {plan, [name | unplaced]}
          ring -> {[{name, Ring.owner(ring, name)} | plan], unplaced}
        end
      end)

    plan = Enum.sort(plan)

    if unplaced != [] do
      Logger.warning(
        "drain: no other node hosts their type: these processes stay and stop " <>
          "with the node unplaced=#{length(unplaced)}"
      )
    end

    task = Task.async(fn -> run_plan(plan, "drain") end)

    report =
      case Task.yield(task, timeout) || Task.shutdown(task, :brutal_kill) do
        {:ok, report} ->
          report

        _ ->
          # out of time: what is not gone by now did not move
          left = Enum.filter(plan, fn {name, _} -> local?(name) end)
          Logger.warning("drain: timed out after #{timeout} ms left=#{length(left)}")

          %{
            moved: length(plan) - length(left),
            failed: for({name, _} <- left, do: {name, :drain_timeout})
          }
      end

    Map.put(report, :unplaced, Enum.sort(unplaced))
  end

  defp local?(name) do
    case :global.whereis_name(name) do
      pid when is_pid(pid) -> node(pid) == node()
      _ -> false
    end
  end

  # From the most to the least loaded of `nodes` until counts differ by
  # at most one.
  defp rebalance_nodes(type, nodes) do
    loads =
      Enum.reduce_while(nodes, [], fn n, acc ->
        case hosted_of(n, type) do
          {:ok, names} -> {:cont, [{n, Enum.sort(names)} | acc]}
          {:error, reason} -> {:halt, {:error, {:hosted, n, reason}}}
        end
      end)

    case loads do
      {:error, _} = error -> error
      loads -> {:ok, rebalance_loop(loads, %{moved: 0, failed: []})}
    end
  rescue
    e -> {:error, {:crashed, Exception.message(e)}}
  end

  defp rebalance_loop(loads, report) do
    case Enum.sort_by(loads, fn {n, names} -> {length(names), n} end) do
      [{least, few} | _] = sorted when length(sorted) > 1 ->
        {most, many} = List.last(sorted)

        if length(many) <= length(few) + 1 do
          report
        else
          k = div(length(many) - length(few), 2)
          {moving, staying} = Enum.split(many, k)
          r = run_plan(Enum.map(moving, &{&1, least}), "rebalance")

          loads =
            for {n, names} <- sorted do
              cond do
                n == most -> {n, staying}
                n == least -> {n, names ++ moving}
                true -> {n, names}
              end
            end

          rebalance_loop(loads, %{
            moved: report.moved + r.moved,
            failed: report.failed ++ r.failed
          })
        end

      _ ->
        report
    end
  end

  defp hosted_of(n, type) when n == node(),
    do: {:ok, for({name, ^type} <- movable_here(), do: name)}

  defp hosted_of(n, type) do
    list = GenServer.call({@name, n}, {@tag, :hosted}, 30_000)
    {:ok, for({name, t} <- list, t == type, do: name)}
  catch
    :exit, {reason, {GenServer, :call, _}} -> {:error, reason}
  end

  # Runs `[{name, target}]` moves, 16 (@placement_concurrency) at a time,
  # logging progress; failed moves are tried again twice.
  defp run_plan(plan, what) do
    Enum.reduce_while(1..@placement_retries, run_plan_once(plan, what), fn attempt, report ->
      if report.failed == [] do
        {:halt, report}
      else
        failed = MapSet.new(report.failed, fn {name, _} -> name end)
        retry = Enum.filter(plan, fn {name, _} -> MapSet.member?(failed, name) end)
        Logger.warning("#{what}: retrying failed moves count=#{length(retry)} attempt=#{attempt}")
        Process.sleep(200 * attempt)
        again = run_plan_once(retry, what)
        {:cont, %{moved: report.moved + again.moved, failed: again.failed}}
      end
    end)
  end

  defp run_plan_once([], _what), do: %{moved: 0, failed: []}

  defp run_plan_once(plan, what) do
    total = length(plan)
    step = max(div(total, 10), 1)
    Logger.info("#{what}: moving processes total=#{total}")

    plan
    |> Task.async_stream(fn {name, to} -> {name, move(name, to)} end,
      max_concurrency: @placement_concurrency,
      ordered: false,
      timeout: :infinity
    )
    |> Enum.reduce(%{moved: 0, failed: []}, fn {:ok, {name, result}}, report ->
      report =
        case result do
          {:ok, _pid} -> %{report | moved: report.moved + 1}
          {:error, reason} -> %{report | failed: [{name, reason} | report.failed]}
        end

      done = report.moved + length(report.failed)

      if rem(done, step) == 0 or done == total do
        Logger.info(
          "#{what}: progress done=#{done} total=#{total} failed=#{length(report.failed)}"
        )
      end

      report
    end)
    |> Map.update!(:failed, &Enum.reverse/1)
  end

  # One placement move. A process running here is asked directly (so
  # this works while the manager itself is draining in terminate/2);
  # one elsewhere through its node's manager. Runs in a process of its
  # own: a result arriving after the timeout dies with it.
  defp move(name, to, timeout \\ @placement_move_timeout) do
    case :global.whereis_name(name) do
      :undefined ->
        {:error, :no_such_name}

      pid when node(pid) == to ->
        {:ok, pid}

      pid when node(pid) == node() ->
        ref = make_ref()
        mon = Process.monitor(pid)
        send(pid, {@tag, :begin, ref, to, :hot, self()})

        receive do
          {@tag, :result, ^ref, result} ->
            Process.demonitor(mon, [:flush])
            result

          {:DOWN, ^mon, :process, _, reason} ->
            {:error, {:source_down, reason}}
        after
          timeout ->
            Process.demonitor(mon, [:flush])
            {:error, :timeout}
        end

      pid ->
        call_migrate(node(pid), {@tag, :migrate, name, to, :hot}, timeout)
    end
  end

  ## ------------------------------------------------------------------
  ## types

  defp resolve_local(module) when is_atom(module) do
    if migratable?(module) do
      # Make the type known here, so the process can come back.
      if Process.whereis(@name),
        do: GenServer.call(@name, {:register_type, module.__erlnode_migratable__(:type), module})

      {:ok, module}
    else
      {:error, {:not_migratable, module}}
    end
  end

  defp resolve_local(type) when is_binary(type) do
    if Process.whereis(@name) do
      case GenServer.call(@name, {:resolve, type}) do
        {:ok, module} -> {:ok, module}
        :error -> {:error, {:unknown_type, type}}
      end
    else
      case resolve_type(type, @default_types) do
        {:ok, module} -> {:ok, module}
        :error -> {:error, {:unknown_type, type}}
      end
    end
  end

  defp resolve_type(type, types) when is_atom(type) and type not in [nil, true, false],
    do: resolve_type(Atom.to_string(type), types)

  defp resolve_type(type, types) when is_binary(type) do
    case Map.fetch(types, type) do
      {:ok, module} ->
        {:ok, module}

      :error ->
        with "Elixir." <> _ <- type,
             module when is_atom(module) <- safe_existing_atom(type),
             true <- migratable?(module) do
          {:ok, module}
        else
          _ -> :error
        end
    end
  end

  defp resolve_type(_type, _types), do: :error

  defp safe_existing_atom(string) do
    String.to_existing_atom(string)
  rescue
    ArgumentError -> nil
  end

  # `use Erlnode.Migratable, type: "cart"` registers "cart" when the
  # manager starts: the modules of :erlnode_ex and of every loaded
  # application that depends on it are looked at once, here.
  defp discovered_types do
    for {app, _, _} <- Application.loaded_applications(),
        app == :erlnode_ex or :erlnode_ex in List.wrap(Application.spec(app, :applications)),
        module <- List.wrap(Application.spec(app, :modules)),
        migratable?(module),
        module.__erlnode_migratable__(:host),
        into: %{},
        do: {module.__erlnode_migratable__(:type), module}
  end

  @doc false
  def migratable?(module) when is_atom(module) do
    Code.ensure_loaded?(module) and function_exported?(module, :__erlnode_migratable__, 1)
  end
end
