defmodule Erlnode.Migratable do
  @moduledoc """
  A GenServer that can be moved, live, to another node (Elixir or Rust
  `erlnode`) without losing, duplicating or reordering messages.

  `use Erlnode.Migratable, type: "account"` in place of `use GenServer`
  (every other option, e.g. `restart:`, goes to `use GenServer`). The
  module then implements the protocol of `docs/handoff.md`: the
  `'$erlnode_migrate'` messages, the source's pause/handover/forwarding and
  the target's wait. Only the two handover callbacks are yours, with
  ProcessHub's names and defaults, so code written for ProcessHub's
  `HotSwap` handover ports by changing the `use` line:

    * `c:prepare_handover_state/1` turns the state into what travels
      (default: the state itself);
    * `c:alter_handover_state/2` builds the target's state from the state
      its `init/1` produced and what travelled (default: what travelled).

  Processes are started and moved with `Erlnode.Migration.start_process/4`
  and `Erlnode.Migration.migrate/3`.

  ## Why the callbacks are wrapped

  At `@before_compile` your `init/1`, `handle_call/3`, `handle_cast/2`,
  `handle_info/2` (and `handle_continue/2`) are made overridable and
  wrapped, the wrapper calling yours with `super`. So the migration
  clauses always run first, whatever catch-all clauses you write, and:

    * `init/1` receives your start arguments unchanged; the wrapper keeps
      them (and the global name) in the process dictionary because the
      protocol restarts the process elsewhere with the *same* arguments;
    * a message, cast or call that none of your clauses matches is logged
      and dropped (a call gets `{:error, :unknown_call}`) instead of
      crashing the process: ProcessHub 0.4.1 loses the handed-over state
      when its own `{:process_hub, :handover_confirmed, cid}` reaches a
      GenServer without a catch-all `handle_info/2`, we must not;
    * during the retention period after a successful migration, every
      message reaching the old process is forwarded unchanged to the new
      one (callers keep their `from`, so the new process answers them).

  ## Options

    * `:type` - the type name both languages register (a string; default
      the module name, e.g. `"Elixir.MyApp.Counter"`, which any Elixir node
      with the module resolves without registration);
    * `:host` - whether this node hosts the type as soon as the
      `:erlnode_ex` application starts (default `true`: the migration
      manager registers every such module of `:erlnode_ex` and of the
      applications that depend on it, so processes of the type can move
      here, including by placement on join). `host: false` leaves the
      type out until `Erlnode.Migration.register_type/2` is called: a
      node that must not receive the type never does;
    * `:version` - the version of the state's shape (a positive integer,
      default 1). Raise it when the shape changes and implement
      `c:upgrade_state/2`: during a rolling deploy, nodes running the old
      and the new version hand processes to each other. Version 1 travels
      as before; other versions as `{:"$erlnode_vsn", vsn, state}`, which
      erlnode_ex releases before versions reject (the move fails, the
      process stays): deploy the library first, then the new version;
    * `:pinned` - `true`: placement never moves processes of this type
      (a node joining, `Erlnode.Migration.rebalance/1` planned on any
      node); an explicit `Erlnode.Migration.migrate/3` still does, and a
      graceful leave still hands them on. Per process:
      `Erlnode.Migration.start_process(type, args, name, pinned: true)`
      (that instance only, not the process it becomes elsewhere);
    * `:retention` - ms the old process keeps forwarding late messages
      after a successful move (default 5_000); it stays a little longer
      while messages keep arriving, so that a call forwarded at the very end
      is answered before the caller sees the old process exit;
    * `:settle` - ms the source waits, after the name points at the target
      and only if messages arrived during the handoff, before its last
      drain (default 5): it lets a sender that looked the name up just
      before the switch deliver to the source, which keeps that sender's
      order strict (see "The one exception" in `docs/handoff.md`);
    * `:accept_timeout` - ms the source waits for `accepted` (10_000);
    * `:handover_timeout` - ms a target waits for `handover` (15_000);
    * `:start_timeout` - ms for the target manager's `start` reply (10_000);
    * `:replicas` - how many other nodes hosting the type keep a copy of
      each process's state (default 0), so a node killed without a
      graceful leave loses nothing acknowledged: see `Erlnode.Replica`
      and `docs/replicas.md`;
    * `:replica_mode` - `:sync` (default: a call's reply waits until the
      replicas hold the state that includes it) or `:async` (bounded lag).

  The same keys can be given per instance to
  `Erlnode.Migration.start_process/4` (plus `:hook`, a test hook called at
  each source phase); they apply to that instance only, not to the process
  it becomes on another node.

  `restart:` defaults to `:transient`: a source stops with
  `{:shutdown, {:migrated, node}}` after a successful move, and a
  `:permanent` child would be restarted next to its migrated self.

  ## Exceptions: what is caught and what is not

  Exactly one kind of exception is caught: a `FunctionClauseError`
  raised *by your `handle_call/3`, `handle_cast/2` or `handle_info/2`
  itself* because none of its clauses matched the message. That message
  is logged and dropped (a call is answered `{:error, :unknown_call}`)
  and the process keeps its state, like the Rust twin answering
  `{:error, {:bad_request, text}}`.

  Everything else is **not** caught, as in any GenServer: a
  `FunctionClauseError` from a helper the callback calls (private or
  not), a `MatchError`, any `raise`, `throw` or `exit` crashes the
  process. Its state is lost; `Erlnode.ProcessSupervisor` then restarts
  it per `restart:` from its start arguments. If the crash happens on
  the target while it applies the handed-over queue, the source resumes
  and crashes at the same message (docs/handoff.md, "Failures").
  Validate input in the callback's clauses (guards, pattern matches on
  the message) when a bad request must not cost the state.

  ## What is not migrated

  Links, monitors, timers and the process dictionary stay behind: messages
  they later produce at the old process are forwarded like any other
  during retention. `init/1` timeouts and `:hibernate` requested by the
  target's `init/1` are ignored (a `{:continue, _}` is honoured before the
  handover is applied). Your `terminate/2` runs on the old process with
  reason `{:shutdown, {:migrated, node}}` and the last state it had.
  """

  @typedoc "A process state, as your callbacks see it."
  @type state :: term()

  @typedoc "What travels to the target: the result of `prepare_handover_state/1`."
  @type handover_state :: term()

  @doc """
  Turns the state into the term sent to the target. Runs in the source
  while it is paused. Default: the state. Keep it a plain term (maps with
  atom keys, binaries, integers) if a Rust node may host the process.
  """
  @callback prepare_handover_state(state()) :: handover_state()

  @doc """
  Builds the target's state from the state its own `init/1` produced
  (from the original start arguments) and the handover state. Default: the
  handover state. Raising here rejects the move: the source keeps running
  with its state and queued messages.
  """
  @callback alter_handover_state(state(), handover_state()) :: state()

  @doc """
  Turns a handover state of another version of the type (`from_vsn`,
  older or newer, see the `:version` option) into one this version
  understands; runs on the target before `c:alter_handover_state/2`.
  Same name and meaning as the Rust `Migratable::upgrade_state`. Keep
  fields that are already there (`Map.put_new/3`): a state that went
  through an older node comes back with the newer fields carried and the
  older node's version. Default: unchanged. Raising rejects the move.
  """
  @callback upgrade_state(from_vsn :: pos_integer(), handover_state()) :: handover_state()

  @doc """
  Optional. Defining it makes the type merge on netsplit heal: when a
  healed partition finds the process's global name registered on both
  sides, the process OTP's rule keeps (on the node whose name sorts
  lower) continues with `merge_conflict(mine, theirs)`, `theirs` being
  the other process's state (it then stops), instead of the other
  process just being killed. Same name and meaning as the Rust
  `Migratable::merge_conflict`. See `Erlnode.Replica.Merge`.
  """
  @callback merge_conflict(mine :: state(), theirs :: state()) :: state()

  @doc """
  Optional, with `c:apply_replica_delta/2`. For a type with replicas:
  what changed from `old` to `new`, the states as they travel to the
  replicas (what `c:prepare_handover_state/1` returns, in its version
  wrapper), for replicas that hold `old`: `{:ok, delta}`, or `:whole` to
  send `new` whole (what happens without the callback). Same name and
  meaning as the Rust `Migratable::replica_delta`.
  `Erlnode.Replica.Delta.map_delta/2` fits any map state.
  """
  @callback replica_delta(old :: handover_state(), new :: handover_state()) :: {:ok, term()} | :whole

  @doc """
  Optional. Rebuilds the new state from the replica held (`held`) and a
  delta made by `c:replica_delta/2` on the owner's node, Rust or Elixir:
  `{:ok, new}`, or `{:error, reason}`, which makes the replica ask the
  owner for the whole state. Runs in the replica store, which never runs
  the process. Pair of `map_delta/2`: `Erlnode.Replica.Delta.apply_map_delta/2`.
  """
  @callback apply_replica_delta(held :: handover_state(), delta :: term()) :: {:ok, handover_state()} | {:error, term()}
  @optional_callbacks merge_conflict: 2, replica_delta: 2, apply_replica_delta: 2

  @migration_keys [
    :type,
    :host,
    :version,
    :pinned,
    :retention,
    :settle,
    :accept_timeout,
    :handover_timeout,
    :start_timeout,
    :replicas,
    :replica_mode
  ]

  @doc false
  defmacro __using__(opts) do
    {mig_opts, gen_opts} = Keyword.split(opts, @migration_keys)
    gen_opts = Keyword.put_new(gen_opts, :restart, :transient)

    quote location: :keep do
      use GenServer, unquote(gen_opts)
      @behaviour Erlnode.Migratable

      @erlnode_migratable_opts unquote(mig_opts)
      @erlnode_migratable_type Keyword.get(
                                 @erlnode_migratable_opts,
                                 :type,
                                 Atom.to_string(__MODULE__)
                               )
      unless is_binary(@erlnode_migratable_type) do
        raise ArgumentError,
              "use Erlnode.Migratable: :type must be a string, got: " <>
                inspect(@erlnode_migratable_type)
      end

      @doc false
      def __erlnode_migratable__(:type), do: @erlnode_migratable_type
      def __erlnode_migratable__(:host), do: Keyword.get(@erlnode_migratable_opts, :host, true)
      def __erlnode_migratable__(:version), do: Keyword.get(@erlnode_migratable_opts, :version, 1)

      def __erlnode_migratable__(:options),
        do: Keyword.drop(@erlnode_migratable_opts, [:type, :host, :version])

      @doc false
      def prepare_handover_state(state), do: state

      @doc false
      def alter_handover_state(_init_state, handover_state), do: handover_state

      @doc false
      def upgrade_state(_from_vsn, handover_state), do: handover_state

      # Defined here, not at @before_compile: GenServer's own
      # @before_compile runs first and warns when init/1 is missing.
      @doc false
      def init(init_arg), do: {:ok, init_arg}

      # Safe defaults, replacing GenServer's (which crash on calls and casts):
      # an unknown message never kills a migratable process.
      @doc false
      def handle_info(msg, state),
        do: Erlnode.Migratable.Runtime.unknown(:info, __MODULE__, msg, state)

      @doc false
      def handle_cast(msg, state),
        do: Erlnode.Migratable.Runtime.unknown(:cast, __MODULE__, msg, state)

      @doc false
      def handle_call(request, _from, state),
        do: Erlnode.Migratable.Runtime.unknown(:call, __MODULE__, request, state)

      defoverridable init: 1,
                     prepare_handover_state: 1,
                     alter_handover_state: 2,
                     upgrade_state: 2,
                     handle_info: 2,
                     handle_cast: 2,
                     handle_call: 3

      @before_compile Erlnode.Migratable
    end
  end

  @doc false
  defmacro __before_compile__(env) do
    continue =
      if Module.defines?(env.module, {:handle_continue, 2}) do
        quote do
          defoverridable handle_continue: 2

          def handle_continue({:"$erlnode_handover", _ref, _src, _user} = cont, state),
            do: Erlnode.Migratable.Runtime.target_continue(__MODULE__, cont, state)

          def handle_continue(cont, state), do: super(cont, state)
        end
      else
        quote do
          @doc false
          def handle_continue({:"$erlnode_handover", _ref, _src, _user} = cont, state),
            do: Erlnode.Migratable.Runtime.target_continue(__MODULE__, cont, state)
        end
      end

    quote location: :keep do
      defoverridable init: 1, handle_call: 3, handle_cast: 2, handle_info: 2

      def init(arg) do
        case Erlnode.Migratable.Runtime.init_arg(__MODULE__, arg) do
          {:target, args, handover} ->
            Erlnode.Migratable.Runtime.target_init(handover, super(args))
            |> Erlnode.Migratable.Runtime.replicate_from(0)

          {:source, args} ->
            super(args) |> Erlnode.Migratable.Runtime.replicate_from(0)

          {:placed, args, handed, seq} ->
            Erlnode.Horde.Runtime.adopt(__MODULE__, handed, super(args))
            |> Erlnode.Migratable.Runtime.replicate_from(seq)

          {:restore, args, replica, seq} ->
            Erlnode.Migratable.Runtime.restore_init(__MODULE__, super(args), replica)
            |> Erlnode.Migratable.Runtime.replicate_from(seq)
        end
      end

      # An acknowledged cast (Erlnode.Replica.cast_acked/3): the cast,
      # then :ok, which (sync) leaves once the replicas hold its effect.
      defp erlnode_acked_cast(msg, state) do
        case handle_cast(msg, state) do
          {:noreply, state} -> {:reply, :ok, state}
          {:noreply, state, extra} -> {:reply, :ok, state, extra}
          {:stop, reason, state} -> {:stop, reason, :ok, state}
        end
      end

      def handle_call(request, from, state) do
        if Erlnode.Migratable.Runtime.forwarding?() do
          Erlnode.Migratable.Runtime.forward({:"$gen_call", from, request}, state)
        else
          case request do
            {:"$erlnode_replica", 1, :cast, msg} ->
              erlnode_acked_cast(msg, state)

            # Lost a netsplit merge: hand the state to the winner, stop.
            {:"$erlnode_replica", 1, :merge_state} ->
              hs = Erlnode.Migratable.Runtime.replica_state(__MODULE__, state)
              {:stop, {:shutdown, :merged}, hs, state}

            _ ->
              try do
                super(request, from, state) |> Erlnode.Replica.Owner.after_callback(state)
              rescue
                e in FunctionClauseError ->
                  Erlnode.Migratable.Runtime.unmatched(
                    e,
                    __STACKTRACE__,
                    __MODULE__,
                    :call,
                    [request, from, state]
                  )
              end
          end
        end
      end

      def handle_cast(msg, state) do
        if Erlnode.Migratable.Runtime.forwarding?() do
          Erlnode.Migratable.Runtime.forward({:"$gen_cast", msg}, state)
        else
          try do
            super(msg, state) |> Erlnode.Replica.Owner.after_callback(state)
          rescue
            e in FunctionClauseError ->
              Erlnode.Migratable.Runtime.unmatched(
                e,
                __STACKTRACE__,
                __MODULE__,
                :cast,
                [msg, state]
              )
          end
        end
      end

      def handle_info(msg, state)
          when is_tuple(msg) and tuple_size(msg) > 0 and elem(msg, 0) == :"$erlnode_migrate",
          do: Erlnode.Migratable.Runtime.control(__MODULE__, msg, state)

      def handle_info({:"$erlnode_replica", 1, :merge_from, loser}, state) when is_pid(loser),
        do: {:noreply, Erlnode.Replica.Merge.absorb(__MODULE__, loser, state)} |> Erlnode.Replica.Owner.after_callback(state)

      def handle_info(msg, state) do
        cond do
          Erlnode.Replica.Owner.mine?(msg) ->
            if Erlnode.Migratable.Runtime.forwarding?(),
              do: {:noreply, state},
              else: Erlnode.Replica.Owner.info(msg, state)

          Erlnode.Migratable.Runtime.forwarding?() ->
            Erlnode.Migratable.Runtime.forward(msg, state)

          true ->
            try do
              super(msg, state) |> Erlnode.Replica.Owner.after_callback(state)
            rescue
              e in FunctionClauseError ->
                Erlnode.Migratable.Runtime.unmatched(
                  e,
                  __STACKTRACE__,
                  __MODULE__,
                  :info,
                  [msg, state]
                )
            end
        end
      end

      unquote(continue)
    end
  end
end
