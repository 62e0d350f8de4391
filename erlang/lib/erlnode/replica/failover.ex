defmodule Erlnode.Replica.Failover do
  @moduledoc false
  # docs/replicas.md, "Failover": each node holding a replica of a
  # process whose owner's node died ranks itself on the ring of the
  # type's remaining nodes and waits 300 ms per rank; the first to find
  # the name free starts the process from its replica *registered* as
  # {:global, name} (GenServer.start with the name: no unregistered copy
  # ever runs). :global serialises registrations cluster-wide, so when
  # several nodes try at once exactly one wins; the others see
  # {:already_started, pid} and keep their replica for the new owner.
  # The node that steps in restores the newest replica any store holds
  # for the dead owner, not necessarily its own: an owner that moved its
  # replica to another node and died before the old holder processed its
  # drop leaves an older entry there, which may rank first.

  require Logger
  alias Erlnode.Replica

  @rank_delay 300
  @try_for 10_000
  @compare_for 500

  # No failover while the owner's node answers: a lost connection is not
  # a crash (OTP's prevent_overlapping_partitions drops live links when
  # another node dies), and a second copy would later be resolved by
  # :global killing one of them.
  def run(dead, orphans) do
    spawn(fn ->
      if Node.ping(dead) == :pong do
        Logger.warning(
          "owner node #{dead} lost its connection but answers: no failover of #{length(orphans)}"
        )
      else
        fail_over(dead, orphans)
      end
    end)
  end

  defp fail_over(dead, orphans) do
    t0 = System.monotonic_time(:millisecond)

    results =
      orphans
      |> Task.async_stream(fn {name, e} -> take_over(dead, name, e) end,
        max_concurrency: 16,
        timeout: @try_for * 3,
        on_timeout: :kill_task
      )
      |> Enum.map(fn
        {:ok, r} -> r
        {:exit, reason} -> {:failed, reason}
      end)

    restored = Enum.count(results, &(&1 == :restored))
    failed = Enum.count(results, &match?({:failed, _}, &1))

    Logger.info(
      "failover of #{dead} done restored=#{restored} failed=#{failed} " <>
        "elapsed_ms=#{System.monotonic_time(:millisecond) - t0}"
    )
  end

  defp take_over(dead, name, e) do
    owners =
      case Replica.ring(e.type, dead) do
        ring ->
          Erlnode.Migration.Ring.owners(ring, name, length(Erlnode.Migration.Ring.nodes(ring)))
      end

    case Enum.find_index(owners, &(&1 == node())) do
      nil ->
        :not_candidate

      rank ->
        Process.sleep(rank * @rank_delay)
        attempt(dead, name, e, System.monotonic_time(:millisecond) + @try_for)
    end
  end

  defp attempt(dead, name, e, deadline) do
    case :global.whereis_name(name) do
      pid when is_pid(pid) and node(pid) != dead ->
        :elsewhere

      pid when is_pid(pid) ->
        retry(dead, name, e, deadline)

      :undefined ->
        restored = newest(dead, name, e)

        with {:ok, module} <- GenServer.call(Erlnode.Migration.name(), {:resolve, e.type}),
             {:ok, pid} <-
               Erlnode.ProcessSupervisor.start_restored(
                 module,
                 e.args,
                 name,
                 restored.state,
                 restored.seq,
                 e.cfg
               ) do
          send(Replica.store_name(), {Replica.tag(), Replica.vsn(), :drop, name, e.owner})

          Logger.info(
            "took over #{inspect(name)} from its replica seq=#{restored.seq} pid=#{inspect(pid)}"
          )

          :restored
        else
          {:error, {:already_started, _}} -> :elsewhere
          :error -> {:failed, {:unknown_type, e.type}}
          other -> {:failed, other}
        end
    end
  end

  # `e`, or a newer entry of the same dead owner held by another store.
  defp newest(dead, name, e) do
    newer =
      for {_, seq, owner, _} = n <- Replica.Placed.entries(Node.list(), name, @compare_for),
          node(owner) == dead and seq > e.seq,
          do: n

    case Enum.max_by(newer, fn {_, seq, _, _} -> seq end, fn -> nil end) do
      nil ->
        e

      {_, seq, _, state} ->
        Logger.info("#{inspect(name)}: a newer replica (seq #{seq}, own #{e.seq}) is held elsewhere; restoring that one")
        %{e | seq: seq, state: state}
    end
  end

  defp retry(dead, name, e, deadline) do
    if System.monotonic_time(:millisecond) >= deadline do
      {:failed, :name_stayed_taken}
    else
      Process.sleep(100)
      attempt(dead, name, e, deadline)
    end
  end
end
