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
      (`{:unknown_type, type}` when the type is not known here);
    * `{:"$erlnode_migrate", :migrate, name, target_node, mode}` from a
      requester: sends the process holding `name`
      `{:"$erlnode_migrate", :begin, ref, target_node, mode, self()}` and
      replies with the `result` the source reports; if the process lives on
      another node, asks that node's manager on the caller's behalf;
      `{:error, :no_such_name}` if nobody holds the name;
    * `{:"$erlnode_migrate", :hosted}`: replies `[{name, type}]`, the
      migratable processes registered globally and running here.

  None blocks the manager: targets are started from a short-lived process
  (a slow `init/1` delays only its own source), relays run in their own
  process, and a migration request is answered when its result message
  arrives, so any number of migrations run at once.

  Membership (for placement, as the Rust managers do): on every `nodeup`
  the manager sends the peer's manager
  `{:"$erlnode_migrate", :members, node(), types, true}` (its type names);
  one receiving such a message records which node hosts which types
  (`members/1`) and, when the last element is `true`, answers with its own
  list (`false`). `nodedown` forgets the node.
  """

  use GenServer
  require Logger

  alias Erlnode.Migratable.Runtime

  @name :erlnode_migration
  @tag :"$erlnode_migrate"

  @default_types %{"account" => Erlnode.Examples.Account}
  @migrate_timeout 30_000

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
          | {:hook, (atom(), map() -> any()) | {module(), atom(), list()}}

  ## ------------------------------------------------------------------
  ## API

  @doc """
  Starts the manager, registered as `:erlnode_migration`.

  Options: `:types`, a map of extra type registrations; `:migrate_timeout`,
  ms a `migrate` request waits for its source's result (#{@migrate_timeout}).
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: @name)

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

  @doc "`[{name, type}]` of the migratable processes running on `node`."
  @spec hosted(node()) :: [{atom(), String.t()}]
  def hosted(node \\ node()), do: GenServer.call({@name, node}, {@tag, :hosted})

  @doc """
  Starts a migratable process on this node and registers it as
  `{:global, name}`. Returns like `GenServer.start/3` (the process is not
  linked to the caller: it may later leave this node).
  """
  @spec start_process(type_or_module(), term(), atom(), [start_option()]) ::
          GenServer.on_start()
  def start_process(type_or_module, args, name, opts \\ []) when is_atom(name) do
    with {:ok, module} <- resolve_local(type_or_module) do
      GenServer.start(module, {:"$erlnode_start", args, name, opts}, name: {:global, name})
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
  when the hosting node's manager could not be reached.

  Options: `mode: :hot | :cold` (default `:hot`), `timeout` (ms, default
  #{@migrate_timeout + 5_000}).
  """
  @spec migrate(atom(), node(), [migrate_option()]) :: {:ok, pid()} | {:error, term()}
  def migrate(name, target_node, opts \\ []) when is_atom(name) and is_atom(target_node) do
    mode = Keyword.get(opts, :mode, :hot)
    timeout = Keyword.get(opts, :timeout, @migrate_timeout + 5_000)

    case :global.whereis_name(name) do
      :undefined -> {:error, :no_such_name}
      pid -> call_migrate(node(pid), {@tag, :migrate, name, target_node, mode}, timeout)
    end
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
      |> Map.merge(Application.get_env(:erlnode_ex, :migration_types, %{}))
      |> Map.merge(Map.new(Keyword.get(opts, :types, %{})))

    :ok = :net_kernel.monitor_nodes(true)
    for peer <- Node.list(), do: announce(peer, types, true)

    {:ok,
     %{
       types: types,
       members: %{},
       pending: %{},
       migrate_timeout: Keyword.get(opts, :migrate_timeout, @migrate_timeout)
     }}
  end

  @impl true
  def handle_call({@tag, :start, type, args, name, ref, src}, from, st)
      when is_reference(ref) and is_pid(src) and is_atom(name) do
    case resolve_type(type, st.types) do
      {:ok, module} ->
        init_arg = {:"$erlnode_handover", ref, src, args, name}

        spawn(fn ->
          reply =
            case GenServer.start(module, init_arg) do
              {:ok, pid} -> {:ok, pid}
              :ignore -> {:error, :ignore}
              {:error, reason} -> {:error, reason}
            end

          GenServer.reply(from, reply)
        end)

        {:noreply, st}

      :error ->
        {:reply, {:error, {:unknown_type, type}}, st}
    end
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

  def handle_call({@tag, :hosted}, _from, st), do: {:reply, hosted_here(), st}

  def handle_call({:register_type, type, module}, _from, st) do
    new? = not Map.has_key?(st.types, type)
    st = %{st | types: Map.put(st.types, type, module)}
    if new?, do: for(peer <- Node.list(), do: announce(peer, st.types, false))
    {:reply, :ok, st}
  end

  def handle_call(:types, _from, st), do: {:reply, st.types, st}

  def handle_call({:members, type}, _from, st) do
    remote = for {node, types} <- st.members, type in types, do: node
    local = if Map.has_key?(st.types, type), do: [node()], else: []
    {:reply, Enum.sort(local ++ remote), st}
  end

  def handle_call({:resolve, type}, _from, st), do: {:reply, resolve_type(type, st.types), st}

  def handle_call(request, _from, st) do
    Logger.warning("#{@name}: unknown or malformed request #{inspect(request, limit: 8)}")
    {:reply, {:error, :unknown_request}, st}
  end

  @impl true
  def handle_info({@tag, :result, ref, result}, st) do
    {:noreply, finish(st, ref, result)}
  end

  def handle_info({@tag, :members, peer, types, ack}, st)
      when is_atom(peer) and is_list(types) and is_boolean(ack) do
    types = Enum.filter(types, &is_binary/1)
    if ack, do: announce(peer, st.types, false)
    {:noreply, %{st | members: Map.put(st.members, peer, types)}}
  end

  def handle_info({:nodeup, peer}, st) do
    announce(peer, st.types, true)
    {:noreply, st}
  end

  def handle_info({:nodedown, peer}, st) do
    {:noreply, %{st | members: Map.delete(st.members, peer)}}
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
  defp announce(peer, types, ack) do
    send({@name, peer}, {@tag, :members, node(), Map.keys(types), ack})
  end

  defp hosted_here do
    for name <- :global.registered_names(),
        pid = :global.whereis_name(name),
        is_pid(pid) and node(pid) == node(),
        {:dictionary, dict} <- [Process.info(pid, :dictionary)],
        %{type: type} <- [dict[Runtime.meta_key()]],
        do: {name, type}
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

  @doc false
  def migratable?(module) when is_atom(module) do
    Code.ensure_loaded?(module) and function_exported?(module, :__erlnode_migratable__, 1)
  end
end
