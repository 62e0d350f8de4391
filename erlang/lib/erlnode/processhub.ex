defmodule Erlnode.ProcessHub do
  @moduledoc """
  Crash-safe children for a [ProcessHub](https://github.com/alfetahe/process-hub)
  0.4.1 hub: a child whose node is killed restarts, where ProcessHub
  restarts it, from the latest copy of its state instead of from its spec.

      defmodule MyApp.Account do
        use Erlnode.Migratable, type: "account", replicas: 1, replica_mode: :sync
        use Erlnode.ProcessHub, hub: :my_hub      # instead of use ProcessHub.Strategy.Migration.HotSwap

        def init(args), do: {:ok, %{balance: args[:balance] || 0}}
        # prepare_handover_state/1, alter_handover_state/2: as for HotSwap
      end

      ProcessHub.start_children(:my_hub, [
        %{id: "a1", start: {MyApp.Account, :start_link, [%{id: "a1", balance: 0}]}}
      ])

  The start argument must be a map (or keyword list) holding the child
  id under `:id` (option `:key`): a process started by ProcessHub does not
  otherwise know its child id, and its copies are named after it
  (`erlnode_processhub:my_hub:ba1`, the same name a Rust member uses for
  the child). The id must be a string, an atom or an integer.

  What it does:

    * It answers ProcessHub's HotSwap handover messages, as `use
      ProcessHub.Strategy.Migration.HotSwap` does (same callbacks:
      `prepare_handover_state/1` on the old process, `alter_handover_state/2`
      on the new one), so moves on join and graceful leaves carry the
      state between Elixir and Rust members. Use it *instead of* HotSwap's
      `use`, in a hub configured with `%HotSwap{handover: true}`.
    * With replicas (the type's `replicas:` option or the `:replicas`
      setting of `:erlnode_ex`, which must run on every Elixir member),
      every state change is copied to the next nodes hosting the type,
      and with `:sync` a call's reply leaves only once the copies hold it.
    * When ProcessHub restarts the child after its node died, `init/1`
      runs as usual and then adopts the latest copy held by any node
      (through `upgrade_state/2` and `alter_handover_state/2`), before the
      first message. Copies whose owner's node is still up are ignored:
      then the state comes by the handover (a move) or not at all (a
      crash on a live node restarts fresh, as ProcessHub does).

  ProcessHub keeps placing, registering and restarting the child; erlnode
  only keeps its state (docs/replicas.md, "Processes Horde or ProcessHub
  places"). `use Erlnode.Migratable` must come first.
  """

  @doc false
  defmacro __using__(opts) do
    quote location: :keep do
      unless Module.defines?(__MODULE__, {:__erlnode_migratable__, 1}) do
        raise CompileError,
          file: __ENV__.file,
          line: __ENV__.line,
          description: "use Erlnode.ProcessHub needs `use Erlnode.Migratable` before it"
      end

      @erlnode_processhub_opts unquote(opts)

      @doc "Starts the process for a ProcessHub hub (`Erlnode.ProcessHub`)."
      def start_link(args), do: Erlnode.ProcessHub.start_link(__MODULE__, args, @erlnode_processhub_opts)

      defoverridable start_link: 1
      @before_compile Erlnode.ProcessHub
    end
  end

  @doc false
  defmacro __before_compile__(_env) do
    # Runs after Erlnode.Migratable's own hook (its `use` came first), so
    # these clauses see HotSwap's messages before its wrapper does.
    quote location: :keep do
      defoverridable handle_info: 2

      def handle_info({:process_hub, :send_handover_state, receiver, cid, opts}, state) when is_list(opts),
        do: Erlnode.ProcessHub.Runtime.send_handover(__MODULE__, receiver, cid, opts, state)

      def handle_info({:process_hub, :handover, cid, {handover_state, opts}}, state) when is_list(opts),
        do: Erlnode.ProcessHub.Runtime.take_handover(__MODULE__, cid, handover_state, opts, state)

      # `confirm_handover: true` makes the new process confirm to itself.
      def handle_info({:process_hub, :handover_confirmed, _cid}, state), do: {:noreply, state}

      def handle_info(msg, state), do: super(msg, state)
    end
  end

  @doc """
  Starts `module` (a `use Erlnode.Migratable` module) with `args` as the
  child of hub `opts[:hub]` whose id is `args[opts[:key] || :id]`.
  """
  def start_link(module, args, opts) do
    hub = Keyword.fetch!(opts, :hub)
    cid = key_of(args, Keyword.get(opts, :key, :id))
    GenServer.start_link(module, {:"$erlnode_processhub", hub, cid, args})
  end

  defp key_of(args, field) when is_map(args), do: Map.fetch!(args, field)
  defp key_of(args, field) when is_list(args), do: Keyword.fetch!(args, field)
end

defmodule Erlnode.ProcessHub.Runtime do
  @moduledoc false
  # The HotSwap handover of a `use Erlnode.ProcessHub` child, with the
  # messages of docs/processhub-protocol.md ("Migration and handover"),
  # and its replicas around it.

  require Logger
  alias Erlnode.Replica.Owner

  # Old process: the last state goes to the replicas, which are then
  # forgotten (the new process replicates what it adopts), and the
  # handover state to the new process.
  def send_handover(module, receiver, cid, opts, state) do
    Owner.leave(state)

    if is_pid(receiver) do
      send(receiver, {:process_hub, :handover, cid, {module.prepare_handover_state(state), opts}})
    end

    if is_pid(opts[:retention_receiver]) do
      send(opts[:retention_receiver], {:process_hub, :retention_handled, cid})
    end

    {:noreply, state}
  end

  # New process: adopt (the sender runs this module's version: ProcessHub
  # carries none), confirm when asked, replicate.
  def take_handover(module, cid, hs, opts, state) do
    new =
      case Erlnode.Migratable.Runtime.alter(module, state, module.__erlnode_migratable__(:version), hs) do
        {:ok, new} ->
          new

        {:error, reason} ->
          Logger.error("#{inspect(module)} #{inspect(cid)}: handover state refused, keeping its own: #{inspect(reason)}")
          state
      end

    if opts[:confirm_handover] == true and is_pid(opts[:confirmation_receiver]) do
      send(opts[:confirmation_receiver], {:process_hub, :handover_confirmed, cid})
    end

    Owner.after_callback({:noreply, new}, state)
  end
end
