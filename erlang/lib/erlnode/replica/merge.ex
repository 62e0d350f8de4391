defmodule Erlnode.Replica.Merge do
  @moduledoc """
  Netsplit merges (`docs/replicas.md`, "Netsplit merges"). A migratable
  module that defines `merge_conflict(mine, theirs)` has its processes
  registered in `:global` with `resolve/3` as the resolve method. When a
  healed partition finds the name on both sides, `:global` calls it (on
  whichever node, Elixir or Rust erlnode, owns the resolving side's
  registration): the pid OTP's default rule would keep wins, as always,
  but instead of killing the other it is told
  `{:"$erlnode_replica", 1, :merge_from, loser}`; it fetches the loser's
  state, continues with `merge_conflict(mine, theirs)` and ends the
  loser. A module without the callback keeps OTP's rule unchanged.

  Also a `:via` module (`name(module, name)`), so that
  `GenServer.start(module, arg, name: ...)` registers with the method.
  """

  import Kernel, except: [send: 2]

  @tag :"$erlnode_replica"

  @doc "The `:global` resolve method: keep the pid on the lower node, merge the other into it."
  def resolve(_name, pid1, pid2) do
    {winner, loser} = if node(pid1) < node(pid2), do: {pid1, pid2}, else: {pid2, pid1}
    Kernel.send(winner, {@tag, 1, :merge_from, loser})
    winner
  end

  @doc "Whether `module`'s processes merge on conflicts."
  def merges?(module) when is_atom(module) and module != nil do
    Code.ensure_loaded?(module) and function_exported?(module, :merge_conflict, 2)
  end

  def merges?(_), do: false

  @doc "The resolve method for `module`'s registrations."
  def method(module),
    do: if(merges?(module), do: &__MODULE__.resolve/3, else: &:global.random_exit_name/3)

  @doc "The GenServer `name:` for `module`'s process `name`."
  def name(module, name),
    do: if(merges?(module), do: {:via, __MODULE__, name}, else: {:global, name})

  # :via callbacks: :global with our method.
  @doc false
  def register_name(name, pid), do: :global.register_name(name, pid, &__MODULE__.resolve/3)
  @doc false
  def unregister_name(name), do: :global.unregister_name(name)
  @doc false
  def whereis_name(name), do: :global.whereis_name(name)
  @doc false
  def send(name, msg), do: :global.send(name, msg)

  ## the two sides, run inside the conflicting processes -----------------

  @doc false
  # The winner: the loser's state through upgrade/alter as a handover,
  # then merge_conflict(mine, theirs); the loser ends either way.
  def absorb(module, loser, state) do
    merged =
      try do
        hs = GenServer.call(loser, {@tag, 1, :merge_state}, 5_000)

        case Erlnode.Migratable.Runtime.restore_init(module, {:ok, state}, hs) do
          {:ok, theirs} -> module.merge_conflict(state, theirs)
          _ -> state
        end
      catch
        :exit, _ -> state
      end

    Process.exit(loser, :kill)
    merged
  end
end
