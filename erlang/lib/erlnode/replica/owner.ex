defmodule Erlnode.Replica.Owner do
  @moduledoc false
  # The running process's side of docs/replicas.md, called from the
  # callbacks `use Erlnode.Migratable` wraps: after a callback changed
  # the state, send it to the replica nodes and (sync) wait for their
  # acks before the callback's result, and so its reply, goes out. An
  # idle process re-checks its replicas on a tick (joins, leaves, dead
  # replica nodes). Its bookkeeping lives in the process dictionary.

  require Logger
  alias Erlnode.Replica

  @key :"$erlnode_replica_owner"
  @tick 500
  @ack_timeout 5_000
  @async_max_lag 32
  @retry_missing 2_000
  # a node whose store refused a delta (no base, or it cannot apply the
  # type's deltas) gets whole states this long; one that did not answer
  # a delta (a release before deltas) this long
  @whole_after_refusal 30_000
  @whole_after_silence 60_000

  # Called from init/1: starts replicating if the process has replicas.
  def start(meta, seq \\ 0) do
    {n, mode} = Replica.config(meta.type, meta.opts)
    # a Horde or ProcessHub child replicates under a name made of its
    # supervisor or hub and key (Erlnode.Replica.Placed); other processes
    # under their name
    name = Map.get(meta, :replica_name) || meta.name

    if n > 0 and name != nil do
      Process.put(@key, %{
        n: n,
        mode: mode,
        type: meta.type,
        name: name,
        args: meta.args,
        module: meta.module,
        seq: seq,
        last: :"$none",
        # the replica state sent last, the base of the next delta
        last_hs: nil,
        # node => until when it gets whole states only
        no_delta: %{},
        holders: %{},
        missing: %{}
      })

      send(self(), {Replica.tag(), :tick})
    end

    :ok
  end

  def active?, do: Process.get(@key) != nil

  # A callback's result: replicate its state if it changed, then return
  # it unchanged. A stop forgets the replicas (after sending the last
  # state, so a stop's reply is covered too).
  def after_callback(result, old_state) do
    case Process.get(@key) do
      nil ->
        result

      r ->
        case new_state(result) do
          {:ok, state} ->
            if state !== old_state, do: flush(r, state)
            result

          {:stop, state} ->
            flush(r, state)
            forget_all()
            result

          :none ->
            result
        end
    end
  end

  defp new_state({:reply, _, s}), do: {:ok, s}
  defp new_state({:reply, _, s, _}), do: {:ok, s}
  defp new_state({:noreply, s}), do: {:ok, s}
  defp new_state({:noreply, s, _}), do: {:ok, s}
  defp new_state({:stop, _, _, s}), do: {:stop, s}
  defp new_state({:stop, _, s}), do: {:stop, s}
  defp new_state(_), do: :none

  # Is `msg` ours (a tick, a late ack, a replica store's DOWN)?
  def mine?({tag, :tick}), do: tag == Replica.tag()
  def mine?({tag, 1, :ack, _, _}), do: tag == Replica.tag()
  def mine?({tag, 1, :need_whole, _, _}), do: tag == Replica.tag()

  def mine?({:DOWN, ref, :process, _, _}) do
    case Process.get(@key) do
      nil -> false
      r -> Enum.any?(r.holders, fn {_, h} -> h.mon == ref end)
    end
  end

  def mine?(_), do: false

  def info(msg, state) do
    case {msg, Process.get(@key)} do
      {_, nil} ->
        :ok

      {{_, :tick}, r} ->
        flush(r, state)
        Process.send_after(self(), {Replica.tag(), :tick}, @tick)

      {{_, 1, :ack, node, seq}, r} ->
        Process.put(@key, ack(r, node, seq))

      {{_, 1, :need_whole, node, _name}, r} ->
        # sent whole at the next flush (an upkeep tick at most)
        r = no_delta(r, node, @whole_after_refusal)

        case r.holders do
          %{^node => h} -> Process.put(@key, put_in(r.holders[node], %{h | whole: true, sent: h.acked}))
          _ -> Process.put(@key, r)
        end

      {{:DOWN, ref, _, _, _}, r} ->
        Process.put(@key, down(r, ref))
    end

    {:noreply, state}
  end

  defp ack(r, node, seq) when is_integer(seq) do
    case r.holders do
      %{^node => h} -> put_in(r.holders[node], %{h | acked: max(h.acked, seq)})
      _ -> r
    end
  end

  defp ack(r, _node, _seq), do: r

  defp down(r, ref) do
    case Enum.find(r.holders, fn {_, h} -> h.mon == ref end) do
      {node, _} -> %{r | holders: Map.delete(r.holders, node), missing: Map.put(r.missing, node, now())}
      nil -> r
    end
  end

  # Sends `state` where it is missing, waits as the mode says.
  defp flush(r, state) do
    targets = Replica.targets(r.type, r.name, r.n, node())
    ready = Enum.reject(targets, &recently_missing?(r, &1))
    changed = state !== r.last
    r = if changed, do: %{r | seq: r.seq + 1, last: state}, else: r
    # the replica state of `seq`: made once per change, so the base of a
    # delta is exactly what the replicas were sent at seq - 1
    hs =
      if changed or r.last_hs == nil,
        do: Erlnode.Migratable.Runtime.replica_state(r.module, state),
        else: r.last_hs

    # holders sent the previous state get the change from it, when the
    # type makes one (docs/replicas.md, "Deltas")
    prev_hs = if changed, do: r.last_hs, else: nil
    r = %{r | last_hs: hs}
    t = now()

    delta_ok? = fn n, h ->
      # (monotonic time can be negative: no entry is not "until 0")
      h.sent + 1 == r.seq and not h.whole and
        case r.no_delta do
          %{^n => until} -> until <= t
          _ -> true
        end
    end

    delta =
      if prev_hs != nil and function_exported?(r.module, :replica_delta, 2) and
           Enum.any?(r.holders, fn {n, h} -> delta_ok?.(n, h) end),
         do: make_delta(r.module, prev_hs, hs),
         else: :whole

    # Make before break: current holders keep getting the state until the
    # ring's targets hold it (a join or a restarted node never leaves the
    # process without a replica).
    write = ready ++ (Map.keys(r.holders) -- ready)

    r =
      Enum.reduce(write, r, fn n, r ->
        h =
          Map.get_lazy(r.holders, n, fn ->
            %{mon: Process.monitor({Replica.store_name(), n}), sent: 0, acked: 0, whole: false, delta_sent: false}
          end)

        h =
          cond do
            h.sent >= r.seq ->
              h

            match?({:ok, _}, delta) and delta_ok?.(n, h) ->
              {:ok, d} = delta
              send({Replica.store_name(), n}, delta_msg(r, d))
              %{h | sent: r.seq, delta_sent: true}

            true ->
              send({Replica.store_name(), n}, put(r, hs))
              %{h | sent: r.seq, whole: false, delta_sent: false}
          end

        put_in(r.holders[n], h)
      end)

    lag = if r.mode == :sync, do: 0, else: @async_max_lag
    r = await_acks(r, lag, now() + @ack_timeout)

    placed =
      ready != [] and
        Enum.all?(ready, fn n -> match?(%{^n => %{acked: a}} when a >= r.seq, r.holders) end)

    r = if placed or targets == [], do: forget_except(r, ready), else: r
    Process.put(@key, r)
  end

  defp put(r, hs) do
    {Replica.tag(), Replica.vsn(), :put, r.name, r.type, r.args, r.seq, hs, self(), {r.n, r.mode}, self()}
  end

  defp delta_msg(r, d) do
    {Replica.tag(), Replica.vsn(), :delta, r.name, r.seq - 1, r.seq, d, self(), self()}
  end

  # A callback that fails or answers something else sends the state whole.
  defp make_delta(module, old, new) do
    case module.replica_delta(old, new) do
      {:ok, d} -> {:ok, d}
      _ -> :whole
    end
  catch
    kind, reason ->
      Logger.warning("#{inspect(module)}.replica_delta/2 failed; the whole state goes: #{Exception.format_banner(kind, reason)}")
      :whole
  end

  defp no_delta(r, node, for_ms), do: %{r | no_delta: Map.put(r.no_delta, node, now() + for_ms)}

  defp recently_missing?(r, n) do
    case r.missing do
      %{^n => t} -> now() - t < @retry_missing
      _ -> false
    end
  end

  defp await_acks(r, lag, deadline) do
    behind = for {n, h} <- r.holders, r.seq - h.acked > lag, do: n

    if behind == [] do
      r
    else
      mons = Map.new(r.holders, fn {n, h} -> {h.mon, n} end)
      tag = Replica.tag()

      receive do
        {^tag, 1, :ack, node, seq} ->
          await_acks(ack(r, node, seq), lag, deadline)

        {^tag, 1, :need_whole, node, _name} ->
          r =
            case r.holders do
              %{^node => h} ->
                send({Replica.store_name(), node}, put(r, r.last_hs))
                put_in(r.holders[node], %{h | delta_sent: false})

              _ ->
                r
            end

          await_acks(no_delta(r, node, @whole_after_refusal), lag, deadline)

        {:DOWN, ref, :process, _, _} when is_map_key(mons, ref) ->
          await_acks(down(r, ref), lag, deadline)
      after
        max(deadline - now(), 0) ->
          Logger.warning("replicas of #{inspect(r.name)} did not ack in time: #{inspect(behind)}")

          Enum.reduce(behind, r, fn n, r ->
            h = r.holders[n]
            Process.demonitor(h.mon, [:flush])
            r = if h.delta_sent, do: no_delta(r, n, @whole_after_silence), else: r
            %{r | holders: Map.delete(r.holders, n), missing: Map.put(r.missing, n, now())}
          end)
      end
    end
  end

  defp forget_except(r, keep) do
    {gone, stay} = Enum.split_with(r.holders, fn {n, _} -> n not in keep end)

    for {n, h} <- gone do
      Process.demonitor(h.mon, [:flush])
      send({Replica.store_name(), n}, {Replica.tag(), Replica.vsn(), :drop, r.name, self()})
    end

    %{r | holders: Map.new(stay)}
  end

  defp forget_all do
    case Process.get(@key) do
      nil -> :ok
      r -> Process.put(@key, forget_except(r, []))
    end

    Process.delete(@key)
  end

  # Before the process hands its state to the process replacing it (a
  # ProcessHub move, Erlnode.ProcessHub): the replicas get the last state,
  # then are forgotten, and nothing replicates from here on; the new
  # process replicates what it adopts.
  def leave(state) do
    case Process.get(@key) do
      nil ->
        :ok

      r ->
        flush(r, state)
        forget_all()
        :ok
    end
  end

  # A successful migration: the target's owner takes the replicas over.
  def stop_without_forgetting do
    case Process.delete(@key) do
      nil -> :ok
      r -> for {_, h} <- r.holders, do: Process.demonitor(h.mon, [:flush])
    end

    :ok
  end

  defp now, do: System.monotonic_time(:millisecond)
end
