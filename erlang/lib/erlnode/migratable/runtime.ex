defmodule Erlnode.Migratable.Runtime do
  @moduledoc false
  # The handoff protocol of docs/handoff.md, run inside the callbacks that
  # `use Erlnode.Migratable` generates. Source side: `control/3` on
  # `begin`, which pauses the process (everything below runs inside one
  # handle_info call, with selective receives), then `forward/2` during
  # retention. Target side: `init_arg/2` + `target_init/2` in init/1, then
  # `target_continue/3` in handle_continue/2.

  require Logger

  alias Erlnode.Migratable.Dispatch

  @tag :"$erlnode_migrate"
  @handover_cont :"$erlnode_handover"
  # process dictionary: %{module, type, args, name, opts} of this process
  @meta :"$erlnode_migratable"
  # process dictionary, set during retention: where to forward
  @fwd :"$erlnode_forward"

  @defaults [
    retention: 5_000,
    settle: 5,
    accept_timeout: 10_000,
    handover_timeout: 15_000,
    start_timeout: 10_000,
    hook: nil
  ]
  # retention is extended while forwards keep coming, by steps of @quiet ms,
  # up to twice the retention
  @quiet 50
  # how long a target whose source died keeps trying to take the name over
  @take_over_time 5_000

  ## ------------------------------------------------------------------
  ## init

  # Classifies the init/1 argument and records what a later migration
  # needs (start args, global name, options).
  def init_arg(module, {:"$erlnode_handover", ref, src, args, name})
      when is_reference(ref) and is_pid(src) do
    put_meta(module, args, name, [])
    {:target, args, {ref, src}}
  end

  # A target whose source has its own replica setting, which it keeps.
  def init_arg(module, {:"$erlnode_handover", ref, src, args, name, replica_opts})
      when is_reference(ref) and is_pid(src) and is_list(replica_opts) do
    put_meta(module, args, name, replica_opts)
    {:target, args, {ref, src}}
  end

  # A failover (Erlnode.Replica.Failover): start from a replica's state.
  def init_arg(module, {:"$erlnode_restore", args, name, replica, seq, {n, mode}})
      when is_integer(seq) do
    put_meta(module, args, name, replicas: n, replica_mode: mode)
    {:restore, args, replica, seq}
  end

  # Started by a Horde supervisor through `use Erlnode.Horde`: take the
  # state the process this one replaces left in the supervisor's CRDT.
  # With replicas (docs/replicas.md, "Processes Horde or ProcessHub places"), a child
  # with no handed-over state starts from its latest replica, if any (the
  # child Horde restarts after its node died).
  def init_arg(module, {:"$erlnode_horde", sup, key, args}),
    do: init_arg(module, {:"$erlnode_horde", sup, key, args, nil})

  def init_arg(module, {:"$erlnode_horde", sup, key, args, registry}) do
    rname = placed_meta(module, args, fn -> Erlnode.Replica.Placed.horde_name(sup, key) end)
    Erlnode.Horde.Runtime.watch_name(registry, key)

    case Erlnode.Horde.Runtime.take(module, sup, key) do
      nil when rname != nil -> placed_start(module, key, args, Erlnode.Replica.Placed.fetch(rname))
      handed -> {:placed, args, handed, 0}
    end
  end

  # Started by a ProcessHub hub through `use Erlnode.ProcessHub`. With
  # replicas, a child whose previous owner's node is down starts from its
  # latest replica (ProcessHub restarted it after that node died); on a
  # move the state comes later, by HotSwap's handover message.
  def init_arg(module, {:"$erlnode_processhub", hub, cid, args}) do
    rname = placed_meta(module, args, fn -> Erlnode.Replica.Placed.processhub_name(hub, cid) end)
    placed_start(module, cid, args, rname && Erlnode.Replica.Placed.fetch(rname, :dead_owner))
  end

  def init_arg(module, {:"$erlnode_start", args, name, opts}) when is_list(opts) do
    put_meta(module, args, name, opts)
    {:source, args}
  end

  def init_arg(module, args) do
    # Started directly (GenServer.start_link(M, args, name: {:global, n})):
    # the name, if any, is looked up when a migration begins.
    put_meta(module, args, nil, [])
    {:source, args}
  end

  # A child a library places: its metadata, with the replica name
  # `make_name` gives when the type has replicas (else nil), returned.
  defp placed_meta(module, args, make_name) do
    put_meta(module, args, nil, [])
    meta = Process.get(@meta)
    {n, _} = Erlnode.Replica.config(meta.type, meta.opts)
    rname = if n > 0, do: make_name.(), else: nil
    Process.put(@meta, Map.put(meta, :replica_name, rname))
    rname
  end

  # Such a child's start: from its fetched replica `{seq, state}`, if any.
  defp placed_start(module, key, args, {seq, state}) do
    Logger.info("#{inspect(module)} #{inspect(key)}: started from its replica (seq #{seq})")
    {:placed, args, unversioned(state), seq}
  end

  defp placed_start(_module, _key, args, nil), do: {:placed, args, nil, 0}

  defp put_meta(module, args, name, opts) do
    own_opts = opts

    opts =
      @defaults
      |> Keyword.merge(module.__erlnode_migratable__(:options))
      |> Keyword.merge(opts)

    Process.put(@meta, %{
      module: module,
      type: module.__erlnode_migratable__(:type),
      args: args,
      name: name,
      opts: opts,
      # the process's own replica setting (its start, a failover or a
      # migration gave it one): it travels to the next node
      own_replicas: Keyword.take(own_opts, [:replicas, :replica_mode])
    })
  end

  def meta, do: Process.get(@meta)

  # The :global resolve method of this process's name (merging types
  # keep theirs across moves).
  defp reg_method, do: Erlnode.Replica.Merge.method((meta() || %{module: nil}).module)

  # init/1's result, with replication started when the type or process
  # has replicas (docs/replicas.md).
  def replicate_from({:ok, _state, _} = ok, seq), do: replicate_started(ok, seq)
  def replicate_from({:ok, _state} = ok, seq), do: replicate_started(ok, seq)
  def replicate_from(other, _seq), do: other

  defp replicate_started(ok, seq) do
    Erlnode.Replica.Owner.start(Process.get(@meta), seq)
    Erlnode.Replica.Placed.forget_dead_owner()
    ok
  end

  # A restored process: its init/1 result, then the replica's state as a
  # target takes a handover (version upgrade, alter_handover_state/2).
  def restore_init(module, {:ok, fresh}, replica), do: restore_init(module, {:ok, fresh, nil}, replica)

  def restore_init(module, {:ok, fresh, _}, replica) do
    case alter(module, fresh, replica) do
      {:ok, state} -> {:ok, state}
      {:error, reason} -> {:stop, {:replica_refused, reason}}
    end
  end

  def restore_init(_module, other, _replica), do: other

  # The term a replica keeps: what a handover would carry.
  def replica_state(module, state) do
    {:ok, hs} = prepare(%{module: module}, state)
    hs
  end

  # the process-dictionary key of the metadata (the manager reads it to
  # list hosted processes)
  def meta_key, do: @meta

  # A target defers everything to handle_continue, where it waits for the
  # handover (init must return quickly: the manager's `start` reply, and
  # so the source, wait for it).
  def target_init({ref, src}, user_result) do
    case user_result do
      {:ok, state} ->
        {:ok, state, {:continue, {@handover_cont, ref, src, nil}}}

      {:ok, state, {:continue, c}} ->
        {:ok, state, {:continue, {@handover_cont, ref, src, {:continue, c}}}}

      {:ok, state, _timeout_or_hibernate} ->
        {:ok, state, {:continue, {@handover_cont, ref, src, nil}}}

      other ->
        other
    end
  end

  ## ------------------------------------------------------------------
  ## unknown / unmatched messages

  def unknown(kind, module, msg, state) do
    Logger.warning(
      "#{inspect(module)} #{inspect(self())}: no clause for #{kind} " <>
        "#{inspect(msg, limit: 12)}; dropped"
    )

    case kind do
      :call -> {:reply, {:error, :unknown_call}, state}
      _ -> {:noreply, state}
    end
  end

  # A FunctionClauseError raised by the user's callback itself for exactly
  # these arguments means "no clause for this message": drop it. Any other
  # FunctionClauseError (deeper in the user's code) is a real crash.
  def unmatched(%FunctionClauseError{} = e, stacktrace, module, kind, args) do
    case stacktrace do
      [{^module, fun, ^args, _} | _] when fun == e.function ->
        [msg | _] = args
        unknown(kind, module, msg, List.last(args))

      _ ->
        reraise e, stacktrace
    end
  end

  ## ------------------------------------------------------------------
  ## protocol messages reaching handle_info

  def control(module, msg, state) do
    case Process.get(@fwd) do
      nil -> control_normal(module, msg, state)
      fwd -> control_forwarding(fwd, msg, state)
    end
  end

  # reply_to: the requester's pid, or `:undefined` when nobody waits.
  defp control_normal(module, {@tag, :begin, ref, target, mode, reply_to}, state)
       when is_pid(reply_to) or reply_to == :undefined do
    cond do
      not is_atom(target) ->
        report(reply_to, ref, {:error, {:bad_target, target}})
        {:noreply, state}

      normalize_mode(mode) == :error ->
        report(reply_to, ref, {:error, {:bad_mode, mode}})
        {:noreply, state}

      true ->
        run_source(module, ref, target, normalize_mode(mode), reply_to, state)
    end
  end

  defp control_normal(module, msg, state) do
    Logger.warning(
      "#{inspect(module)} #{inspect(self())}: dropped stray or malformed " <>
        "migration message #{inspect(msg, limit: 8)}"
    )

    {:noreply, state}
  end

  @doc false
  def normalize_mode(mode) when mode in [:hot, :hot_swap, :hotswap], do: :hot
  def normalize_mode(mode) when mode in [:cold, :cold_swap, :coldswap], do: :cold
  def normalize_mode(_), do: :error

  ## ------------------------------------------------------------------
  ## source

  defp run_source(module, ref, target, mode, reply_to, state) do
    meta =
      Process.get(@meta) ||
        %{
          module: module,
          type: module.__erlnode_migratable__(:type),
          name: nil,
          args: nil,
          opts: @defaults
        }

    name = if target == node(), do: nil, else: meta.name || find_global_name()

    cond do
      target == node() ->
        report(reply_to, ref, {:error, :same_node})
        {:noreply, state}

      name == nil ->
        report(reply_to, ref, {:error, :no_global_name})
        {:noreply, state}

      true ->
        ctx = %{
          module: module,
          meta: %{meta | name: name},
          ref: ref,
          target: target,
          reply_to: reply_to,
          opts: meta.opts,
          t: nil,
          mon: nil
        }

        if mode == :hot, do: hot(ctx, state), else: cold(ctx, state)
    end
  end

  # HotSwap: start T first, then capture. S is blocked in this callback
  # from `begin` on: what arrives meanwhile queues and travels in Q.
  defp hot(ctx, state) do
    case start_target(ctx) do
      {:ok, t} ->
        ctx = %{ctx | t: t, mon: Process.monitor(t)}
        hook(ctx, :started)

        case prepare(ctx, state) do
          {:ok, hs} ->
            case drain(ctx.mon) do
              {:down, reason, q, deferred} ->
                fail(ctx, {:target_down, reason}, q, deferred, state)

              {:ok, q, deferred} ->
                handover(ctx, hs, q, deferred, state)
            end

          {:error, reason} ->
            kill_target(ctx)
            fail(ctx, reason, [], [], state)
        end

      {:error, reason} ->
        fail(ctx, reason, [], [], state)
    end
  end

  # ColdSwap: capture and drain first, then start T.
  defp cold(ctx, state) do
    case prepare(ctx, state) do
      {:ok, hs} ->
        {:ok, q, deferred} = drain(nil)

        case start_target(ctx) do
          {:ok, t} ->
            ctx = %{ctx | t: t, mon: Process.monitor(t)}
            hook(ctx, :started)
            handover(ctx, hs, q, deferred, state)

          {:error, reason} ->
            fail(ctx, reason, q, deferred, state)
        end

      {:error, reason} ->
        fail(ctx, reason, [], [], state)
    end
  end

  defp handover(ctx, hs, q, deferred, state) do
    %{ref: ref, t: t, mon: mon} = ctx
    send(t, {@tag, :handover, ref, hs, q, self()})
    hook(ctx, :handover_sent)

    receive do
      {@tag, :accepted, ^ref, ^t} ->
        hook(ctx, :accepted)
        switch(ctx, q, deferred, state)

      {@tag, :rejected, ^ref, reason} ->
        Process.demonitor(mon, [:flush])
        fail(ctx, {:rejected, reason}, q, deferred, state)

      {:DOWN, ^mon, :process, _, reason} ->
        fail(ctx, {:target_down, reason}, q, deferred, state)
    after
      ctx.opts[:accept_timeout] ->
        kill_target(ctx)
        fail(ctx, :timeout, q, deferred, state)
    end
  end

  defp switch(ctx, q, deferred, state) do
    %{ref: ref, t: t, mon: mon, meta: %{name: name}} = ctx
    # Returns once every node's name server has replaced S by T: every
    # message sent to S through the name before that is now in our mailbox.
    :yes = :global.re_register_name(name, t, reg_method())
    hook(ctx, :registered)

    # Settle: a sender that looked the name up just before the switch may
    # send to us a little after it (it was descheduled, or suspended on a
    # busy distribution port, between its lookup and its send); when there
    # is traffic, give such messages time to arrive before the final drain
    # (docs/handoff.md, "The one exception", Settle). Idle processes skip it.
    settle = if q != [] or mailbox_len() > 0, do: ctx.opts[:settle], else: 0

    receive do
      {:DOWN, ^mon, :process, _, reason} ->
        # T died after accepting, before switched: take the name back.
        :yes = :global.re_register_name(name, self(), reg_method())
        fail(ctx, {:target_down, reason}, q, deferred, state)
    after
      settle ->
        case drain(mon) do
          {:down, reason, q2, deferred2} ->
            :yes = :global.re_register_name(name, self(), reg_method())
            fail(ctx, {:target_down, reason}, q ++ q2, deferred ++ deferred2, state)

          {:ok, q2, deferred2} ->
            send(t, {@tag, :fwd, ref, q2})
            send(t, {@tag, :switched, ref})
            Process.demonitor(mon, [:flush])
            hook(ctx, :switched)
            report(ctx.reply_to, ref, {:ok, t})
            # Migration requests that arrived meanwhile go to the new owner.
            Enum.each(deferred ++ deferred2, &send(t, &1))
            start_retention(ctx)
            {:noreply, state}
        end
    end
  end

  # Rollback: S resumes with its state, Q applied first (so before every
  # message that arrived since, which is still in the mailbox).
  defp fail(ctx, reason, q, deferred, state) do
    Logger.warning(
      "#{inspect(ctx.module)} #{inspect(self())}: migration of #{inspect(ctx.meta.name)} " <>
        "to #{ctx.target} failed (#{inspect(reason, limit: 8)}); resuming here " <>
        "with #{length(q)} queued message(s)"
    )

    report(ctx.reply_to, ctx.ref, {:error, reason})
    result = Dispatch.apply_all(ctx.module, q, state)
    Enum.each(deferred, &send(self(), &1))

    case result do
      {:ok, state} -> {:noreply, state}
      {:stop, reason, state} -> {:stop, reason, state}
    end
  end

  defp start_target(ctx) do
    %{meta: meta, target: target, ref: ref} = ctx
    old_shape = {@tag, :start, meta.type, meta.args, meta.name, ref, self()}

    case Map.get(meta, :own_replicas, []) do
      [] ->
        call_start(target, old_shape, ctx)

      _own ->
        # the process's own setting (over the module's defaults; a node's
        # :replicas application setting is that node's, not the process's)
        own = {Keyword.get(meta.opts, :replicas, 0), Keyword.get(meta.opts, :replica_mode, :sync)}
        request = Tuple.append(old_shape, %{replicas: own})

        case call_start(target, request, ctx) do
          # a manager of an earlier release: ask it the old way (the
          # process then takes that node's type setting, as before)
          {:error, :unknown_request} -> call_start(target, old_shape, ctx)
          other -> other
        end
    end
  end

  defp call_start(target, request, ctx) do
    case GenServer.call({:erlnode_migration, target}, request, ctx.opts[:start_timeout]) do
      {:ok, t} when is_pid(t) -> {:ok, t}
      {:error, reason} -> {:error, reason}
      other -> {:error, {:bad_start_reply, other}}
    end
  catch
    :exit, reason -> {:error, {:start_failed, exit_reason(reason)}}
  end

  defp exit_reason({reason, {GenServer, :call, _}}), do: reason
  defp exit_reason(reason), do: reason

  defp prepare(ctx, state) do
    {:ok, versioned(ctx.module.__erlnode_migratable__(:version), ctx.module.prepare_handover_state(state))}
  rescue
    e -> {:error, {:prepare_handover_state, Exception.message(e)}}
  catch
    kind, reason -> {:error, {:prepare_handover_state, Exception.format_banner(kind, reason)}}
  end

  # docs/handoff.md, "State versions and unknown fields": version 1
  # travels bare, the format of nodes without versions.
  defp versioned(1, hs), do: hs
  defp versioned(vsn, hs), do: {:"$erlnode_vsn", vsn, hs}

  defp unversioned({:"$erlnode_vsn", vsn, hs}) when is_integer(vsn) and vsn > 0, do: {vsn, hs}
  defp unversioned(hs), do: {1, hs}

  defp kill_target(%{t: t, mon: mon}) do
    Process.exit(t, :kill)
    Process.demonitor(mon, [:flush])
  end

  defp report(reply_to, ref, result) when is_pid(reply_to),
    do: send(reply_to, {@tag, :result, ref, result})

  defp report(_nobody, _ref, _result), do: :ok

  defp hook(ctx, phase) do
    info = %{ref: ctx.ref, target: ctx.t, target_node: ctx.target, name: ctx.meta.name}

    case ctx.opts[:hook] do
      nil -> :ok
      fun when is_function(fun, 2) -> fun.(phase, info)
      {m, f, a} -> apply(m, f, [phase, info | a])
    end
  end

  # Empties the mailbox, in order, into Q. Kept out of Q: system messages
  # and the parent's EXIT (re-sent to self afterwards, for the gen_server
  # loop), `begin` requests (deferred), other protocol messages (stale:
  # dropped), and the DOWN of our monitor on T (reported).
  defp drain(mon) do
    parent = parent()
    {result, system} = drain_loop(mon, parent, [], [], [], nil)
    Enum.each(system, &send(self(), &1))
    result
  end

  defp drain_loop(mon, parent, q, deferred, system, down) do
    receive do
      {:system, _, _} = msg ->
        drain_loop(mon, parent, q, deferred, [msg | system], down)

      {:EXIT, ^parent, _} = msg ->
        drain_loop(mon, parent, q, deferred, [msg | system], down)

      {:DOWN, ^mon, :process, _, reason} when mon != nil ->
        drain_loop(mon, parent, q, deferred, system, {:down, reason})

      {@tag, :begin, _, _, _, _} = msg ->
        drain_loop(mon, parent, q, [msg | deferred], system, down)

      msg when is_tuple(msg) and tuple_size(msg) > 0 and elem(msg, 0) == @tag ->
        Logger.warning(
          "#{inspect(self())}: dropped stale migration message #{inspect(msg, limit: 8)}"
        )

        drain_loop(mon, parent, q, deferred, system, down)

      msg ->
        drain_loop(mon, parent, [msg | q], deferred, system, down)
    after
      0 ->
        q = Enum.reverse(q)
        deferred = Enum.reverse(deferred)

        result =
          case down do
            nil -> {:ok, q, deferred}
            {:down, reason} -> {:down, reason, q, deferred}
          end

        {result, Enum.reverse(system)}
    end
  end

  defp mailbox_len do
    {:message_queue_len, n} = Process.info(self(), :message_queue_len)
    n
  end

  defp parent do
    case Process.get(:"$ancestors") do
      [pid | _] when is_pid(pid) -> pid
      [name | _] when is_atom(name) -> Process.whereis(name) || :none
      _ -> :none
    end
  end

  defp find_global_name do
    me = self()
    Enum.find(:global.registered_names(), fn n -> :global.whereis_name(n) == me end)
  end

  ## retention (old process, after a successful move)

  defp start_retention(ctx) do
    # The target's owner replicates from now on (to its own replica nodes).
    Erlnode.Replica.Owner.stop_without_forgetting()
    now = now()
    retention = ctx.opts[:retention]

    Process.put(@fwd, %{
      target: ctx.t,
      ref: ctx.ref,
      last: now,
      hard_deadline: now + 2 * retention
    })

    Process.send_after(self(), {@tag, :retention_over, ctx.ref}, retention)
  end

  def forwarding?, do: Process.get(@fwd) != nil

  # Forwards one message unchanged (a call keeps its `from`: T answers it).
  def forward(msg, state) do
    fwd = Process.get(@fwd)
    send(fwd.target, msg)
    Process.put(@fwd, %{fwd | last: now()})
    {:noreply, state}
  end

  defp control_forwarding(%{ref: ref} = fwd, {@tag, :retention_over, ref}, state) do
    now = now()

    if now - fwd.last < @quiet and now < fwd.hard_deadline do
      # still busy: a call forwarded just now must be answered by T before
      # the caller's monitor on us fires
      Process.send_after(self(), {@tag, :retention_over, ref}, @quiet)
      {:noreply, state}
    else
      {:stop, {:shutdown, {:migrated, node(fwd.target)}}, state}
    end
  end

  defp control_forwarding(_fwd, msg, state), do: forward(msg, state)

  defp now, do: System.monotonic_time(:millisecond)

  ## ------------------------------------------------------------------
  ## target

  def target_continue(module, {@handover_cont, ref, src, user_cont}, state) do
    mon = Process.monitor(src)

    user_result =
      case user_cont do
        nil -> {:ok, state}
        {:continue, c} -> Dispatch.continue(module, c, state)
      end

    case user_result do
      {:ok, state} ->
        await_handover(module, ref, src, mon, state)

      {:stop, reason, state} ->
        Process.demonitor(mon, [:flush])
        {:stop, reason, state}
    end
  end

  defp await_handover(module, ref, src, mon, state) do
    timeout = Process.get(@meta).opts[:handover_timeout]

    receive do
      {@tag, :handover, ^ref, hs, q, ^src} when is_list(q) ->
        apply_handover(module, ref, src, mon, state, hs, q)

      {:DOWN, ^mon, :process, _, reason} ->
        {:stop, {:shutdown, {:source_down, reason}}, state}
    after
      timeout ->
        Process.demonitor(mon, [:flush])
        {:stop, {:shutdown, :handover_timeout}, state}
    end
  end

  defp apply_handover(module, ref, src, mon, state, hs, q) do
    case alter(module, state, hs) do
      {:ok, state} ->
        # Exceptions in the user's callbacks crash T here: S sees DOWN
        # before `accepted` and resumes (and crashes at the same message).
        case Dispatch.apply_all(module, q, state) do
          {:ok, state} ->
            send(src, {@tag, :accepted, ref, self()})
            await_switch(module, ref, src, mon, state, nil)

          {:stop, reason, state} ->
            # The process stopped by itself while catching up: it has
            # moved, then stopped. Let S finish the switch first.
            send(src, {@tag, :accepted, ref, self()})
            await_switch(module, ref, src, mon, state, {:stop, reason})
        end

      {:error, reason} ->
        Logger.error(
          "#{inspect(module)} #{inspect(self())}: rejected the handover from " <>
            "#{inspect(src)}: #{inspect(reason)}"
        )

        send(src, {@tag, :rejected, ref, reason})
        Process.demonitor(mon, [:flush])
        {:stop, {:shutdown, {:handover_rejected, reason}}, state}
    end
  end

  defp alter(module, state, hs) do
    {vsn, hs} = unversioned(hs)
    alter(module, state, vsn, hs)
  end

  # A handed-over state `hs` of version `vsn`: upgraded when the version
  # differs, then given to alter_handover_state/2. Also used by
  # Erlnode.Horde's handoff.
  def alter(module, state, vsn, hs) do
    hs =
      if vsn == module.__erlnode_migratable__(:version),
        do: hs,
        else: module.upgrade_state(vsn, hs)

    {:ok, module.alter_handover_state(state, hs)}
  rescue
    e -> {:error, {:alter_handover_state, Exception.message(e)}}
  catch
    kind, reason -> {:error, {:alter_handover_state, Exception.format_banner(kind, reason)}}
  end

  # Messages sent directly to T (through the name, once S re-registered
  # it) stay in the mailbox: only `fwd` and `switched` are received here,
  # so they are processed after everything S forwards.
  defp await_switch(module, ref, src, mon, state, stopping) do
    receive do
      {@tag, :fwd, ^ref, msgs} when is_list(msgs) ->
        case stopping do
          nil ->
            case Dispatch.apply_all(module, msgs, state) do
              {:ok, state} ->
                await_switch(module, ref, src, mon, state, nil)

              {:stop, reason, state} ->
                await_switch(module, ref, src, mon, state, {:stop, reason})
            end

          _ ->
            await_switch(module, ref, src, mon, state, stopping)
        end

      {@tag, :switched, ^ref} ->
        Process.demonitor(mon, [:flush])
        finish(state, stopping)

      {:DOWN, ^mon, :process, _, reason} ->
        # S (or its node) died before `switched`: we own the process now.
        Logger.warning(
          "#{inspect(module)} #{inspect(self())}: source #{inspect(src)} went down " <>
            "(#{inspect(reason, limit: 8)}) before the switch; taking over its name"
        )

        case take_over_name(src) do
          :ok ->
            finish(state, stopping)

          {:conflict, other} ->
            name = Process.get(@meta).name

            Logger.error(
              "#{inspect(self())}: #{inspect(name)} is held by #{inspect(other)}; stopping"
            )

            {:stop, {:shutdown, {:name_conflict, name, other}}, state}
        end
    end
  end

  defp finish(state, nil), do: {:noreply, state}
  defp finish(state, {:stop, reason}), do: {:stop, reason, state}

  defp take_over_name(src) do
    name = Process.get(@meta).name
    take_over_loop(name, src, now() + @take_over_time)
  end

  defp take_over_loop(name, src, deadline) do
    me = self()

    case :global.register_name(name, me, reg_method()) do
      :yes ->
        :ok

      :no ->
        case :global.whereis_name(name) do
          ^me ->
            # This node names us already, but the switch's registration
            # may have been cut short by a partition and reached only some
            # nodes of our side (a heal does not repair a disagreement
            # inside one side): registering again tells every node we reach.
            :yes = :global.re_register_name(name, me, reg_method())
            :ok

          holder when holder == :undefined or holder == src ->
            # the dead source's entry is not cleaned up yet
            if now() < deadline do
              Process.sleep(10)
              take_over_loop(name, src, deadline)
            else
              Logger.error(
                "#{inspect(me)}: could not register #{inspect(name)}; running unregistered"
              )

              :ok
            end

          other ->
            {:conflict, other}
        end
    end
  end
end
